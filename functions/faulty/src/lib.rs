//! **faulty** (viewer-request): misbehaves on purpose, to show what the node does with a
//! function's prints and panics. `/print/*` prints a line to stdout and one to stderr, then
//! continues (the lines go to the node's log); `/panic/*` panics (the viewer gets a 502, the
//! log the panic message). Anything else continues untouched.

use edge_sdk::{Error, Outcome, Request, ViewerRequest};

/// The viewer-request handler.
pub fn viewer_request(req: Request<ViewerRequest>) -> Result<Outcome, Error> {
    let path = req.path();
    if path.starts_with("/panic/") {
        panic!("faulty was asked to panic at {path}");
    }
    if path.starts_with("/print/") {
        println!("faulty printed for {path}");
        eprintln!("faulty warned for {path}");
    }
    Ok(Outcome::Continue)
}

edge_sdk::viewer_request!(viewer_request);
