//! Delivering what happens on a gRPC call or stream to the VM that made it,
//! as Envoy's `Context` does (`onGrpcReceiveWrapper`,
//! `onGrpcCloseWrapper`, …): each event is one callback on the root context
//! (the SDKs route it by token to the context that made the call), with its
//! metadata, message or status readable during that callback only.
//!
//! A unary call gets one callback: `proxy_on_grpc_receive` with the reply,
//! or `proxy_on_grpc_close` with the failure. A stream gets its initial
//! metadata, each message, its trailing metadata and its close. A call or
//! stream the filter cancelled hears nothing more; one that the server
//! closed is over once its close is delivered (a stream the filter has not
//! closed stays known, as in Envoy, so a later close answers OK).

use super::Worker;
use crate::grpc::client::GrpcEvent;
use crate::grpc::{DeliveredGrpc, GrpcDelivery, TokenKind};
use crate::headers::HeaderMap;
use crate::state::host_log;
use crate::types::LogLevel;
use crate::vm::{GrpcCallback, Vm};

fn count(length: usize) -> u32 {
    u32::try_from(length).unwrap_or(u32::MAX)
}

/// The callback an event makes, what the filter may read meanwhile, and the
/// number it is given.
fn callback_for(event: GrpcEvent) -> (GrpcCallback, DeliveredGrpc, u32, String) {
    match event {
        GrpcEvent::InitialMetadata(pairs) => {
            let map = HeaderMap::from_byte_pairs(pairs);
            let entries = count(map.len());
            let delivered = DeliveredGrpc {
                initial_metadata: Some(map),
                ..DeliveredGrpc::default()
            };
            let what = format!("initial metadata ({entries} entries)");
            (
                GrpcCallback::ReceiveInitialMetadata,
                delivered,
                entries,
                what,
            )
        }
        GrpcEvent::Message(message) => {
            let size = count(message.len());
            let delivered = DeliveredGrpc {
                message: Some(message),
                ..DeliveredGrpc::default()
            };
            (
                GrpcCallback::Receive,
                delivered,
                size,
                format!("message ({size} bytes)"),
            )
        }
        GrpcEvent::TrailingMetadata(pairs) => {
            let map = HeaderMap::from_byte_pairs(pairs);
            let entries = count(map.len());
            let delivered = DeliveredGrpc {
                trailing_metadata: Some(map),
                ..DeliveredGrpc::default()
            };
            let what = format!("trailing metadata ({entries} entries)");
            (
                GrpcCallback::ReceiveTrailingMetadata,
                delivered,
                entries,
                what,
            )
        }
        GrpcEvent::Close { status, message } => {
            let what = format!("close (status {status}, message `{message}`)");
            let delivered = DeliveredGrpc {
                status: (status, message),
                ..DeliveredGrpc::default()
            };
            (GrpcCallback::Close, delivered, status, what)
        }
    }
}

impl Worker {
    /// An event of a gRPC call: delivered to the VM that made the call, if
    /// that VM still runs and the call is still in flight.
    pub(super) fn grpc_event(&mut self, delivery: GrpcDelivery) {
        if delivery.vm_instance != self.vm_instance {
            return;
        }
        let keep_closed = self.env().calls.limits.max_in_flight_per_vm;
        let Some(vm) = self.vm.as_mut() else {
            return;
        };
        let label = vm.label();
        let token = delivery.token;
        let origin = match vm.state().calls.grpc.origin_of(token) {
            Some(origin) => origin,
            None if delivery.orphan => Vm::ROOT_CONTEXT_ID,
            // Cancelled, or already closed.
            None => return,
        };
        let closes = matches!(delivery.event, GrpcEvent::Close { .. });
        let ends_call = TokenKind::of(token) == TokenKind::Call
            && !matches!(
                delivery.event,
                GrpcEvent::InitialMetadata(_) | GrpcEvent::TrailingMetadata(_)
            );
        let (callback, delivered, number, what) = callback_for(delivery.event);
        host_log(
            &self.config.env,
            label,
            LogLevel::Debug,
            format!("gRPC {token}: {what} delivered to the root context"),
        );
        vm.state().calls.grpc.delivering = Some(delivered);
        let result = vm.grpc_callback(callback, token, number);
        if let Some(vm) = self.vm.as_mut() {
            let grpc = &mut vm.state().calls.grpc;
            grpc.delivering = None;
            // Envoy forgets a call once its reply or close is delivered, and
            // a stream once both sides are closed.
            if ends_call {
                grpc.call_done(token);
            } else if closes {
                grpc.stream_closed_by_server(token, keep_closed);
            }
        }
        let stream = self.contexts.get(&origin).copied();
        match result {
            Ok(called) => {
                if let Some(id) = stream {
                    self.book(id, called.fuel, called.host_calls.as_deref());
                }
                self.apply_deferred(called.deferred, None);
            }
            Err(trap) => self.fail_vm(&trap, callback.name()),
        }
    }
}
