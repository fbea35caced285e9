//! The broker instance of this canister, reached through `read_state` and `mutate_state`.

use crate::core::Broker;
use ic_stable_structures::DefaultMemoryImpl;
use std::cell::RefCell;

pub type Memory = DefaultMemoryImpl;

thread_local! {
    static BROKER: RefCell<Option<Broker<Memory>>> = const { RefCell::new(None) };
}

pub fn read_state<R>(f: impl FnOnce(&Broker<Memory>) -> R) -> R {
    BROKER.with(|b| f(b.borrow().as_ref().expect("broker is initialized")))
}

pub fn mutate_state<R>(f: impl FnOnce(&mut Broker<Memory>) -> R) -> R {
    BROKER.with(|b| f(b.borrow_mut().as_mut().expect("broker is initialized")))
}

pub fn install(broker: Broker<Memory>) {
    BROKER.with(|b| *b.borrow_mut() = Some(broker));
}
