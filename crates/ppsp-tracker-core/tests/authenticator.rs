//! The authenticator contract: called without locks, with the request's SASL data and
//! channel security, and its refusals answered with 401.

mod common;

use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::thread;
use std::time::Duration;

use common::*;
use ppsp_tracker_core::ppsp_proto::{
    PeerId, PeerMode, Request, SaslAuth, Status, SwarmActionKind, TransactionId,
};
use ppsp_tracker_core::{AuthError, Authenticator, Config, Timestamp, Tracker};

/// Records what it is asked, and reaches back into the tracker while deciding: if the
/// tracker held any of its locks during the call, this would deadlock.
#[derive(Default)]
struct Reentrant {
    tracker: OnceLock<Weak<Tracker>>,
    seen: Mutex<Vec<(String, Option<String>, bool)>>,
}

impl Authenticator for Reentrant {
    fn authenticate(
        &self,
        peer_id: &PeerId,
        auth: Option<&SaslAuth>,
        secure_channel: bool,
    ) -> Result<(), AuthError> {
        if let Some(tracker) = self.tracker.get().and_then(Weak::upgrade) {
            let now = Timestamp::from_secs(1_700_000_000);
            let _ = block_on(state_of(&tracker, now));
            let _ = block_on(tracker.session_state(peer_id, now));
            let _ = block_on(tracker.sweep(now));
        }
        self.seen.lock().expect("not poisoned").push((
            peer_id.to_string(),
            auth.map(|a| a.mechanism.clone()),
            secure_channel,
        ));
        match auth.map(|a| a.mechanism.as_str()) {
            Some("PLAIN") if !secure_channel => Err(AuthError::PlainOverCleartext),
            Some("PLAIN" | "ANONYMOUS") | None => Ok(()),
            Some(other) => Err(AuthError::UnknownMechanism(other.to_owned())),
        }
    }
}

#[test]
fn authenticator_runs_without_locks_and_sees_the_request() {
    let (done, finished) = mpsc::channel();
    let worker = thread::spawn(move || {
        let auth = Arc::new(Reentrant::default());
        let tracker = Arc::new(Tracker::with_seed(Config::default(), auth.clone(), 3));
        let _ = auth.tracker.set(Arc::downgrade(&tracker));
        let now = Timestamp::from_secs(1_700_000_000);
        let plain = SaslAuth {
            mechanism: "PLAIN".into(),
            credentials: Some(b"\0p\0pw".to_vec()),
        };
        let send = |peer: &str,
                    ctx: &ppsp_tracker_core::RequestContext,
                    auth: Option<SaslAuth>,
                    tid: u64| {
            let request = Request {
                peer_id: pid(peer),
                auth_token: None,
                transaction_id: TransactionId::numeric(tid),
                body: connect_body(vec![], auth),
            };
            block_on(tracker.handle(now, ctx, &request)).status
        };
        let mut secure = xml_ctx("127.0.0.1:1000");
        assert_eq!(send("p", &secure, Some(plain.clone()), 1), Status::Ok);
        // Replacement CONNECT: the old session exists while the authenticator runs.
        assert_eq!(send("p", &secure, Some(plain.clone()), 2), Status::Ok);
        secure.secure_channel = false;
        assert_eq!(
            send("p", &secure, Some(plain), 3),
            Status::AuthenticationRequired
        );
        // The failed CONNECT left the session in place.
        assert!(
            block_on(tracker.session_state(&pid("p"), now))
                .expect("state")
                .is_some()
        );
        let json = json_connect(
            "j",
            &[("s", SwarmActionKind::Join, PeerMode::Seed)],
            None,
            TransactionId::numeric(4),
        );
        assert_eq!(
            block_on(tracker.handle(now, &json_ctx("127.0.0.1:1001"), &json)).status,
            Status::Ok
        );
        let seen = auth.seen.lock().expect("not poisoned").clone();
        done.send(seen).expect("receiver alive");
    });
    let seen = finished
        .recv_timeout(Duration::from_secs(20))
        .expect("authenticator deadlocked: a lock was held during the call");
    worker.join().expect("worker panicked");
    assert_eq!(
        seen,
        vec![
            ("p".into(), Some("PLAIN".into()), true),
            ("p".into(), Some("PLAIN".into()), true),
            ("p".into(), Some("PLAIN".into()), false),
            ("j".into(), None, true),
        ]
    );
}
