//! Rebuilds the crate when a migration is added or changed: the migrations
//! are embedded (`store::migrate`), and cargo does not otherwise notice a
//! new directory under `migrations/`.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
