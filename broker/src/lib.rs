//! # async-flow broker
//!
//! A canister that stores outbound messages in stable memory and runs the
//! NEW → ACK → FIN handshake with their targets on behalf of client
//! canisters. The protocol logic is the pure [`core`]; this file holds only
//! the endpoint shims: check the caller, read `now` once, call the core,
//! hand its effects to the [`driver`].
#![forbid(unsafe_code)]

pub mod core;
pub mod driver;
pub mod http;
pub mod metrics;
pub mod runtime;
pub mod state;
pub mod storage;

use crate::core::Broker;
use crate::http::{HttpRequest, HttpResponse};
use crate::runtime::{CanisterRuntime, IcRuntime};
use crate::state::{install, mutate_state, read_state};
use async_flow_client::{
    Ack, Config, ConfigUpdate, EnqueueArgs, EnqueueError, EnqueueResult, ListError, ListFilter, ManageError,
    MessagePage, MessageStatus, MsgId, Stats,
};
use ic_cdk::api::{is_controller, msg_caller, msg_cycles_accept, msg_cycles_available};
use ic_stable_structures::DefaultMemoryImpl;

/// Most messages in one `enqueue_batch` call.
pub const MAX_BATCH: usize = 100;

fn open(arg: Option<ConfigUpdate>) {
    let rt = IcRuntime;
    let broker = Broker::open(DefaultMemoryImpl::default(), ic_cdk::api::canister_self(), arg, rt.time())
        .unwrap_or_else(|e| ic_cdk::trap(format!("invalid init or upgrade argument: {e:?}")));
    install(broker);
    driver::rearm_after_upgrade(&rt);
}

#[ic_cdk::init]
fn init(arg: Option<ConfigUpdate>) {
    open(arg);
}

#[ic_cdk::post_upgrade]
fn post_upgrade(arg: Option<ConfigUpdate>) {
    // No pre_upgrade: all state is already in stable structures.
    open(arg);
}

fn enqueue_one(args: EnqueueArgs) -> EnqueueResult {
    let rt = IcRuntime;
    let caller = msg_caller();
    let result = mutate_state(|b| b.enqueue(caller, args, msg_cycles_available(), rt.time()));
    match result {
        Ok((accepted, effects)) => {
            msg_cycles_accept(accepted.fee_cycles);
            driver::execute(&rt, effects);
            Ok(accepted.msg_id)
        }
        Err(e) => Err(e),
    }
}

#[ic_cdk::update]
fn enqueue(args: EnqueueArgs) -> EnqueueResult {
    enqueue_one(args)
}

#[ic_cdk::update]
fn enqueue_batch(batch: Vec<EnqueueArgs>) -> Vec<EnqueueResult> {
    if batch.len() > MAX_BATCH {
        let error =
            EnqueueError::InvalidOption { field: "batch".into(), reason: format!("at most {MAX_BATCH} messages") };
        return vec![Err(error); batch.len()];
    }
    batch.into_iter().map(enqueue_one).collect()
}

/// Step 3. Replies `()` in every case so that the rejection counters stick;
/// only the message's target can complete it.
#[ic_cdk::update]
#[allow(non_snake_case)]
fn com_asyncFlow_ack(ack: Ack) {
    let rt = IcRuntime;
    let (_, effects) = mutate_state(|b| b.on_ack(msg_caller(), ack, rt.time()));
    driver::execute(&rt, effects);
}

#[ic_cdk::query]
fn status(msg_id: MsgId) -> Option<MessageStatus> {
    let caller = msg_caller();
    read_state(|b| b.status(caller, is_controller(&caller), msg_id))
}

#[ic_cdk::query]
fn list_messages(filter: ListFilter) -> Result<MessagePage, ListError> {
    let caller = msg_caller();
    read_state(|b| b.list_messages(caller, is_controller(&caller), filter))
}

#[ic_cdk::query]
fn stats() -> Stats {
    read_state(|b| b.stats(IcRuntime.time()))
}

#[ic_cdk::update]
fn cancel(msg_id: MsgId) -> Result<(), ManageError> {
    let rt = IcRuntime;
    let caller = msg_caller();
    let effects = mutate_state(|b| b.cancel(caller, is_controller(&caller), msg_id, rt.time()))?;
    driver::execute(&rt, effects);
    Ok(())
}

#[ic_cdk::update]
fn retry(msg_id: MsgId) -> Result<(), ManageError> {
    let rt = IcRuntime;
    let caller = msg_caller();
    let effects = mutate_state(|b| b.retry(caller, is_controller(&caller), msg_id, rt.time()))?;
    driver::execute(&rt, effects);
    Ok(())
}

#[ic_cdk::query]
fn get_config() -> Config {
    read_state(|b| b.config().clone())
}

#[ic_cdk::update]
fn set_config(update: ConfigUpdate) -> Result<(), ManageError> {
    if !is_controller(&msg_caller()) {
        return Err(ManageError::NotAuthorized);
    }
    mutate_state(|b| b.set_config(update))
}

/// Ingress is paid by the broker, and only canisters send ACKs: refuse
/// ingress ACKs before they execute. Not a security boundary (inspect_message
/// runs on one node and does not see inter-canister calls); every check also
/// lives in the method.
#[ic_cdk::inspect_message]
fn inspect_message() {
    if ic_cdk::api::msg_method_name() != async_flow_client::protocol::method::ACK {
        ic_cdk::api::accept_message();
    }
}

#[ic_cdk::query]
fn http_request(request: HttpRequest) -> HttpResponse {
    match request.url.split('?').next() {
        Some("/metrics") => {
            let stats = read_state(|b| b.stats(IcRuntime.time()));
            match metrics::encode(&stats, IcRuntime.time()) {
                Ok(body) => HttpResponse::text(200, "text/plain; version=0.0.4", body),
                Err(e) => HttpResponse::text(500, "text/plain", format!("failed to encode metrics: {e}").into_bytes()),
            }
        }
        _ => HttpResponse::text(404, "text/plain", b"not found".to_vec()),
    }
}

ic_cdk::export_candid!();

#[cfg(test)]
mod candid_interface {
    use candid_parser::utils::{service_equal, CandidSource};

    #[test]
    fn should_match_the_checked_in_did() {
        let did = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../broker.did");
        let exported = super::__export_service();
        if let Err(e) = service_equal(CandidSource::Text(&exported), CandidSource::File(&did)) {
            panic!("broker.did differs from the exported service: {e:?}\n--- exported ---\n{exported}");
        }
    }
}
