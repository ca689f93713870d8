#!/usr/bin/env bash
# The RUSTC_WORKSPACE_WRAPPER of scripts/test.sh: compiles the workspace's own crates with
# clippy-driver, which is rustc plus clippy's lints (the driver `cargo clippy` runs too),
# and makes every warning an error. Cargo calls it as `clippy-rustc.sh RUSTC ARGS...`;
# clippy-driver takes that form itself. Dependencies are compiled by plain rustc.
set -euo pipefail
exec "${CLIPPY_DRIVER:?CLIPPY_DRIVER is set by scripts/test.sh}" "$@" -D warnings
