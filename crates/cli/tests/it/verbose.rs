//! `-v`: the engine's own reports on stderr, only when asked for.

use crate::support::TempDb;

#[test]
fn engine_reports_appear_only_with_verbose() {
    let db = TempDb::new();
    db.run(&["put", "k", "v"]).success();
    let quiet = db.run(&["get", "k"]).success();
    assert!(quiet.stderr.is_empty(), "{}", quiet.describe());
    let verbose = db.run(&["-vv", "get", "k"]).success();
    assert_eq!(verbose.stdout, b"v\n");
    assert!(verbose.stderr.contains("opened") && verbose.stderr.contains("closed cleanly"), "{}", verbose.describe());
    assert!(!verbose.stderr.contains('\x1b'), "no colours when stderr is not a terminal: {}", verbose.describe());
    // -v shows warnings only: a clean open and close have none.
    let warnings = db.run(&["-v", "get", "k"]).success();
    assert!(warnings.stderr.is_empty(), "{}", warnings.describe());
}
