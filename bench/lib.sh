# Shared by the benchmarks; source it after `cd`-ing to the repository root and setting
# REPO_ROOT.

# Sets BIN to the directory holding the binaries under test (picloud and the bench tools):
# PICLOUD_BIN_DIR when set, to compare two builds with one harness in one sitting; else
# this checkout's release build, made now.
bench_binaries() {
    if [ -n "${PICLOUD_BIN_DIR:-}" ]; then
        BIN="$PICLOUD_BIN_DIR"
    else
        printf '\n==> %s\n' "building picloud and the bench tools (release)" >&2
        cargo build --release -q -p picloud -p picloud-bench
        BIN="${CARGO_TARGET_DIR:-$REPO_ROOT/target}/release"
    fi
}
