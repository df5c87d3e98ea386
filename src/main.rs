use clap::Parser;

/// mimalloc returns freed memory to the system; glibc malloc kept hundreds
/// of MB in per-thread arenas after a burst of large request bodies.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[actix_web::main]
async fn main() -> anyhow::Result<()> {
    eventd::cli::run(eventd::config::Cli::parse()).await
}
