# Shared helpers for the scripts (sourced, not run).

# Installs the wasm target when it is missing (rustup is the only requirement).
ensure_wasm_target() {
  if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-unknown-unknown; then
    echo "installing the wasm32-unknown-unknown target"
    rustup target add wasm32-unknown-unknown
  fi
}

# Installs cargo-nextest when it is missing; falls back to cargo test if that fails.
test_runner() {
  if cargo nextest --version >/dev/null 2>&1; then
    echo nextest
  elif cargo install --locked cargo-nextest >/dev/null 2>&1; then
    echo nextest
  else
    echo cargo
  fi
}
