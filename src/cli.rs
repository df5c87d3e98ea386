//! The `eventd` subcommands other than the server itself.

use anyhow::{bail, Context};

use crate::config::{AccountsAction, Cli, Command, DbSettings, KeysAction, LogFormat};
use crate::domain::time::rfc3339;
use crate::startup::{redact, Application};
use crate::store::accounts::Account;
use crate::store::{Store, StoreError};

pub fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,actix_server=warn"));
    // One line per finished request (its span closing), with the request id,
    // route, status and latency, besides whatever is logged inside it.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_span_events(tracing_subscriber::fmt::format::FmtSpan::CLOSE)
        .with_ansi(colour_logs(
            std::io::IsTerminal::is_terminal(&std::io::stderr()),
            std::env::var_os("NO_COLOR"),
        ))
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

/// Colour codes in text logs only when stderr is a terminal and `NO_COLOR`
/// is unset or empty (<https://no-color.org>): a file or pipe gets plain text.
fn colour_logs(stderr_is_terminal: bool, no_color: Option<std::ffi::OsString>) -> bool {
    stderr_is_terminal && no_color.is_none_or(|v| v.is_empty())
}

fn open(db: &DbSettings) -> anyhow::Result<Store> {
    let store = Store::connect(&db.database_url, db.db_pool_size.min(2))
        .with_context(|| format!("opening the database {}", redact(&db.database_url)))?;
    store.migrate()?;
    Ok(store)
}

fn find_account(store: &Store, name_or_id: &str) -> anyhow::Result<Account> {
    let by_name = store.find_account_by_name(name_or_id);
    match by_name {
        Ok(a) => Ok(a),
        Err(StoreError::NotFound) => match name_or_id.parse::<i64>() {
            Ok(id) => store
                .find_account(id)
                .map_err(|_| anyhow::anyhow!("no account named or numbered '{name_or_id}'")),
            Err(_) => bail!("no account named '{name_or_id}'"),
        },
        Err(e) => Err(e.into()),
    }
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(settings) => {
            init_tracing(settings.log_format);
            let app = Application::build(settings).await?;
            app.run_until_stopped().await?;
        }
        Command::Worker(settings) => {
            init_tracing(settings.log_format);
            crate::startup::run_worker(settings).await?;
        }
        Command::Pull(settings) => crate::pull_client::run(settings).await?,
        Command::Migrate(db) => {
            init_tracing(LogFormat::Text);
            let store = Store::connect(&db.database_url, 1)?;
            let n = store.migrate()?;
            tracing::info!(applied = n, "database migrations applied");
            println!("{n} migration(s) applied");
        }
        Command::Accounts { db, action } => {
            let store = open(&db)?;
            match action {
                AccountsAction::Create { name } => {
                    let (account, key) = store.create_account(&name)?;
                    println!(
                        "account {} (id {})\nkey id {}\napi key {}",
                        account.name, account.id, key.id, key.secret
                    );
                }
                AccountsAction::List => {
                    for a in store.list_accounts()? {
                        println!("{}\t{}\t{}", a.id, a.name, rfc3339(a.created_at));
                    }
                }
            }
        }
        Command::Keys { db, action } => {
            let store = open(&db)?;
            match action {
                KeysAction::Create { account } => {
                    let a = find_account(&store, &account)?;
                    let key = store.create_key(a.id)?;
                    println!("key id {}\napi key {}", key.id, key.secret);
                }
                KeysAction::List { account } => {
                    let a = find_account(&store, &account)?;
                    for k in store.list_keys(a.id)? {
                        let state = k
                            .revoked_at
                            .map(|t| format!("revoked {}", rfc3339(t)))
                            .unwrap_or("active".into());
                        println!("{}\t{}…\t{}\t{}", k.id, k.prefix, rfc3339(k.created_at), state);
                    }
                }
                KeysAction::Revoke { account, key_id } => {
                    let a = find_account(&store, &account)?;
                    store
                        .revoke_key(a.id, &key_id)
                        .map_err(|_| anyhow::anyhow!("no key '{key_id}' on account '{}'", a.name))?;
                    println!("revoked {key_id}");
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::colour_logs;

    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        assert!(colour_logs(true, None));
        assert!(colour_logs(true, Some("".into())));
        assert!(!colour_logs(true, Some("1".into())));
        assert!(!colour_logs(false, None));
    }
}
