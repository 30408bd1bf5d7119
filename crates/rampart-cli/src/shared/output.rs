//! What the commands show while they work.

use indicatif::{ProgressBar, ProgressStyle};
use rampart_repo::Progress;

/// Shows long operations on stderr with a progress bar.
#[derive(Default)]
pub struct BarProgress(std::sync::Mutex<Option<ProgressBar>>);

impl Progress for BarProgress {
    fn start(&self, what: &str, total: u64) {
        let bar = ProgressBar::new(total);
        bar.set_style(
            ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} ({eta})")
                .expect("valid template")
                .progress_chars("=> "),
        );
        bar.set_message(what.to_string());
        *self.0.lock().expect("progress lock") = Some(bar);
    }
    fn advance(&self, n: u64) {
        if let Some(b) = &*self.0.lock().expect("progress lock") {
            b.inc(n);
        }
    }
    fn finish(&self) {
        if let Some(b) = self.0.lock().expect("progress lock").take() {
            b.finish_and_clear();
        }
    }
}
