use clap::Parser;

#[actix_web::main]
async fn main() -> anyhow::Result<()> {
    eventd::cli::run(eventd::config::Cli::parse()).await
}
