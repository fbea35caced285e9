//! The built canisters export every method of their .did, with the right kind
//! (`canister_update <m>` or `canister_query <m>`). scripts/build.sh builds
//! the wasms first; scripts/test.sh sets ASYNC_FLOW_REQUIRE_WASM=1 so a
//! missing wasm fails there instead of being skipped.

use candid::types::internal::FuncMode;
use candid_parser::utils::CandidSource;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// (`canister_update m` | `canister_query m`) for every method of the .did.
fn expected_exports(did: &Path) -> BTreeSet<String> {
    let (env, actor) = CandidSource::File(did).load().unwrap_or_else(|e| panic!("{}: {e}", did.display()));
    let actor = actor.expect("the .did has a service");
    env.as_service(&actor)
        .expect("a service")
        .iter()
        .map(|(name, ty)| {
            let func = env.as_func(ty).expect("methods are functions");
            let query = func.modes.iter().any(|m| matches!(m, FuncMode::Query | FuncMode::CompositeQuery));
            format!("canister_{} {name}", if query { "query" } else { "update" })
        })
        .collect()
}

fn wasm_exports(wasm: &[u8]) -> BTreeSet<String> {
    let mut exports = BTreeSet::new();
    for payload in wasmparser::Parser::new(0).parse_all(wasm) {
        if let wasmparser::Payload::ExportSection(section) = payload.expect("valid wasm") {
            for export in section {
                exports.insert(export.expect("valid export").name.to_string());
            }
        }
    }
    exports
}

fn check(canister: &str, did: &str) -> BTreeSet<String> {
    let wasm_path = repo_root().join("target/canisters").join(format!("{canister}.wasm"));
    let Ok(wasm) = std::fs::read(&wasm_path) else {
        if std::env::var_os("ASYNC_FLOW_REQUIRE_WASM").is_some() {
            panic!("{} is missing: run scripts/build.sh", wasm_path.display());
        }
        eprintln!("SKIPPED: {} not built (run scripts/build.sh first)", wasm_path.display());
        return BTreeSet::new();
    };
    let exports = wasm_exports(&wasm);
    // ic-cdk-timers adds `canister_update <ic-cdk internal> timer_executor`; it is not part of the interface.
    let canister_methods: BTreeSet<String> = exports
        .iter()
        .filter(|e| e.starts_with("canister_update ") || e.starts_with("canister_query "))
        .filter(|e| !e.contains("<ic-cdk internal>"))
        .cloned()
        .collect();
    let expected = expected_exports(&repo_root().join(did));
    assert_eq!(canister_methods, expected, "{canister}: exported methods differ from {did}");
    for hook in ["canister_init", "canister_post_upgrade"] {
        assert!(exports.contains(hook), "{canister} exports {hook}");
    }
    exports
}

#[test]
fn should_export_every_broker_method_with_its_kind() {
    let exports = check("broker", "broker.did");
    if !exports.is_empty() {
        assert!(exports.contains("canister_inspect_message"), "the broker refuses ingress ACKs early");
    }
}

#[test]
fn should_export_every_sender_example_method_with_its_kind() {
    check("sender", "examples/sender/sender.did");
}

#[test]
fn should_export_every_receiver_example_method_with_its_kind() {
    check("receiver", "examples/receiver/receiver.did");
}
