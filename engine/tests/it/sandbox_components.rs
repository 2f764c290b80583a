//! Bytes that are not a runnable handler, and components that ask for more
//! than they are granted: each gets a clear error before any guest code runs.

use objectos_engine::sandbox::{Capability, CapabilitySet, ComponentError, Disposition, OutcomeKind};

use crate::harness::{hostile, job, noop, sandbox};

fn compile_err(bytes: &[u8]) -> ComponentError {
    sandbox().compile(bytes).expect_err("must be refused")
}

#[test]
fn empty_file() {
    assert_eq!(compile_err(b""), ComponentError::Empty);
    assert_eq!(compile_err(b"").to_string(), "the file is empty");
}

#[test]
fn bytes_that_are_not_wasm() {
    assert_eq!(compile_err(b"#!/bin/sh\necho hi\n"), ComponentError::NotWasm);
}

#[test]
fn a_core_module_is_not_a_component() {
    let module = wat::parse_str("(module (func (export \"run\")))").unwrap();
    let error = compile_err(&module);
    assert_eq!(error, ComponentError::CoreModule);
    assert!(error.to_string().contains("wasm32-wasip2"));
}

#[test]
fn a_truncated_component() {
    let error = compile_err(&objectos_test_guests::NOOP[..200]);
    assert!(matches!(error, ComponentError::Invalid(_)), "{error:?}");
}

#[test]
fn a_component_exporting_another_world() {
    let component = wat::parse_str(
        r#"(component
            (core module $m (func (export "f")))
            (core instance $i (instantiate $m))
            (func $f (canon lift (core func $i "f")))
            (export "hello" (func $f)))"#,
    )
    .unwrap();
    let error = compile_err(&component);
    assert!(matches!(error, ComponentError::WrongWorld(_)), "{error:?}");
    assert!(error.to_string().contains("objectos:jobs/job@0.1.0"), "{error}");
}

#[test]
fn an_unknown_import_is_named() {
    let component = wat::parse_str(
        r#"(component
            (import "acme:evil/net@1.0.0" (instance (export "connect" (func)))))"#,
    )
    .unwrap();
    let error = compile_err(&component);
    assert_eq!(error, ComponentError::UnknownImports(vec!["`acme:evil/net@1.0.0`".into()]));
    assert!(error.to_string().contains("acme:evil/net@1.0.0"));
}

#[test]
fn another_contract_version_is_named() {
    let component = wat::parse_str(
        r#"(component
            (import "objectos:jobs/records@0.2.0" (instance (export "count" (func)))))"#,
    )
    .unwrap();
    let error = compile_err(&component);
    assert!(error.to_string().contains("this engine implements objectos:jobs@0.1.0"), "{error}");
}

#[test]
fn requested_capabilities_are_the_imports() {
    assert_eq!(noop().requested(), CapabilitySet::empty());
    assert_eq!(hostile().requested(), CapabilitySet::all());
    assert_eq!(hostile().sha256().len(), 64);
}

#[tokio::test]
async fn an_import_outside_the_grant_fails_before_running() {
    let mut partial = job("runs");
    partial.grants = [Capability::Records, Capability::Artifacts].into_iter().collect();
    let outcome = sandbox().run(&hostile(), partial).await;
    assert_eq!(
        outcome.kind,
        OutcomeKind::CapabilityDenied {
            missing: vec!["records-write".into(), "records-import".into(), "artifacts-read".into()]
        }
    );
    assert_eq!(outcome.kind.disposition(), Disposition::Fail);
    assert_eq!(outcome.usage.fuel, 0, "the guest never ran");
    assert!(outcome.kind.to_string().contains("records-write, records-import, artifacts-read"));
}

#[tokio::test]
async fn a_handler_without_capabilities_runs_with_none_granted() {
    let mut echo = job("");
    echo.input = r#"{"hello":"world"}"#.into();
    echo.grants = CapabilitySet::empty();
    let outcome = sandbox().run(&noop(), echo).await;
    assert_eq!(outcome.kind, OutcomeKind::Completed { result: r#"{"hello":"world"}"#.into() });
    assert!(outcome.usage.fuel > 0);
    assert!(outcome.usage.peak_memory > 0);
}
