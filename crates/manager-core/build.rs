//! The migrations are embedded by `src/migrations.rs`, which sees a folder's files only
//! when the crate compiles: a new migration file must make it compile again.

fn main() {
    println!("cargo:rerun-if-changed=../../migrations");
}
