//! Progress bars on stderr, drawn only when stderr is a terminal (so pipes, files and tests
//! see nothing of them).

use std::io::IsTerminal as _;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Whether bars are drawn at all.
fn enabled() -> bool {
    std::io::stderr().is_terminal()
}

/// A bar over `total` units; `bytes` shows them as sizes.
pub(crate) fn bar(message: &str, total: u64, bytes: bool) -> ProgressBar {
    if !enabled() {
        return ProgressBar::hidden();
    }
    let template = match bytes {
        true => "{msg} {wide_bar} {bytes}/{total_bytes} ({bytes_per_sec}, eta {eta})",
        false => "{msg} {wide_bar} {human_pos}/{human_len} ({per_sec}, eta {eta})",
    };
    let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    bar.set_style(ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar()));
    bar.set_message(message.to_owned());
    bar
}

/// A spinner for work of unknown size, counting units.
pub(crate) fn spinner(message: &str) -> ProgressBar {
    if !enabled() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template("{spinner} {msg} {human_pos} ({per_sec}, {elapsed})")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    bar.set_message(message.to_owned());
    bar.enable_steady_tick(Duration::from_millis(100));
    bar
}

/// A byte bar that appears only if something reports progress (a recovery at open: most
/// opens have none). Cloned into a callback that must be `Send + Sync`.
#[derive(Clone)]
pub(crate) struct LazyBar {
    message: &'static str,
    bar: Arc<Mutex<Option<ProgressBar>>>,
}

impl LazyBar {
    pub(crate) fn new(message: &'static str) -> LazyBar {
        LazyBar { message, bar: Arc::new(Mutex::new(None)) }
    }

    pub(crate) fn set(&self, done: u64, total: u64) {
        let mut slot = self.bar.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let bar = slot.get_or_insert_with(|| bar(self.message, total, true));
        bar.set_length(total);
        bar.set_position(done);
    }

    pub(crate) fn finish(&self) {
        let slot = self.bar.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(bar) = slot.as_ref() {
            bar.finish_and_clear();
        }
    }
}
