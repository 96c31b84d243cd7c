//! Progress for people on long runs (`replay`, `replay --db`, `rebuild`):
//! an indicatif bar on standard error, drawn only when standard error is a
//! terminal, so that logs, pipes and tests see nothing but what the command
//! prints anyway. A disabled [`Progress`] is a no-op, so callers update it
//! unconditionally.

use std::borrow::Cow;
use std::fmt;
use std::io::{self, IsTerminal};
use std::time::Duration;

use indicatif::style::TemplateError;
use indicatif::{HumanCount, ProgressBar, ProgressDrawTarget, ProgressFinish, ProgressState, ProgressStyle};

/// What a bar's position counts.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Measure {
    /// Bytes read (of input files whose sizes are known).
    Bytes,
    /// Things counted, named by this plural noun ("lines", "events").
    Count(&'static str),
}

/// Whether progress is drawn: only on a terminal, and never when the user
/// asked for totals only (`--quiet`).
pub fn wanted(quiet: bool, stderr_is_terminal: bool) -> bool {
    !quiet && stderr_is_terminal
}

/// The indicatif template for `measure`: a bar with the rate and the time
/// left when the total is known, otherwise a spinner with the count and
/// the rate. The bar takes the width the rest leaves, so that the line
/// fits the terminal and is redrawn in place. `{rate}` is ours (see
/// [`style`]): indicatif's `{per_sec}` shows four decimals.
pub fn template(measure: Measure, total_known: bool) -> Cow<'static, str> {
    match (measure, total_known) {
        (Measure::Bytes, true) => Cow::Borrowed(
            "{prefix} [{wide_bar}] {binary_bytes}/{binary_total_bytes} ({binary_bytes_per_sec}, {eta} left) {msg}",
        ),
        (Measure::Bytes, false) => {
            Cow::Borrowed("{spinner} {prefix} {binary_bytes} read ({binary_bytes_per_sec}) {msg}")
        }
        (Measure::Count(noun), true) => Cow::Owned(format!(
            "{{prefix}} [{{wide_bar}}] {{human_pos}}/{{human_len}} {noun} ({{rate}}, {{eta}} left) {{msg}}"
        )),
        (Measure::Count(noun), false) => {
            Cow::Owned(format!("{{spinner}} {{prefix}} {{human_pos}} {noun} ({{rate}}) {{msg}}"))
        }
    }
}

/// The style of [`template`], with its `{rate}` key: a whole number per second.
fn style(measure: Measure, total_known: bool) -> Result<ProgressStyle, TemplateError> {
    Ok(ProgressStyle::with_template(&template(measure, total_known))?
        .with_key("rate", |state: &ProgressState, out: &mut dyn fmt::Write| {
            let _ = write!(out, "{}/s", HumanCount(state.per_sec() as u64));
        })
        .progress_chars("=> "))
}

/// A progress bar or spinner on standard error, or nothing.
#[derive(Clone)]
pub struct Progress {
    bar: Option<ProgressBar>,
}

impl Progress {
    /// A bar named `prefix` counting `measure` out of `total` (a spinner when
    /// the total is unknown) when `enabled`; otherwise nothing, and every
    /// method does nothing.
    pub fn new(enabled: bool, prefix: &'static str, measure: Measure, total: Option<u64>) -> Progress {
        Progress::drawn_to(enabled.then(ProgressDrawTarget::stderr), prefix, measure, total)
    }

    /// [`Progress::new`] drawn to `target` (`None`: disabled).
    fn drawn_to(
        target: Option<ProgressDrawTarget>,
        prefix: &'static str,
        measure: Measure,
        total: Option<u64>,
    ) -> Progress {
        let Some(target) = target else {
            return Progress { bar: None };
        };
        // The template is one of ours: a mistake in it is caught by the unit
        // test below, and at worst shows indicatif's default style.
        let style = style(measure, total.is_some()).unwrap_or_else(|_| ProgressStyle::default_bar());
        let bar = ProgressBar::with_draw_target(total, target)
            .with_style(style)
            .with_prefix(prefix)
            // An error path that returns early must not leave a bar behind.
            .with_finish(ProgressFinish::AndClear);
        // Redrawn on a timer too, so that a spinner turns and the rate falls
        // while the input stalls (standard input waiting for its writer).
        bar.enable_steady_tick(Duration::from_millis(200));
        Progress { bar: Some(bar) }
    }

    /// [`Progress::new`], enabled when standard error is a terminal and the
    /// user did not ask for `quiet`.
    pub fn on_terminal(quiet: bool, prefix: &'static str, measure: Measure, total: Option<u64>) -> Progress {
        Progress::new(wanted(quiet, io::stderr().is_terminal()), prefix, measure, total)
    }

    /// Moves the bar to `position` (of its measure).
    pub fn set_position(&self, position: u64) {
        if let Some(bar) = &self.bar {
            bar.set_position(position);
        }
    }

    /// The text shown after the bar.
    pub fn set_message(&self, message: impl FnOnce() -> String) {
        if let Some(bar) = &self.bar {
            bar.set_message(message());
        }
    }

    /// Runs `write` with the bar taken off the screen, so that lines written
    /// to standard error meanwhile do not mix with it.
    pub fn suspend<R>(&self, write: impl FnOnce() -> R) -> R {
        match &self.bar {
            Some(bar) => bar.suspend(write),
            None => write(),
        }
    }

    /// Takes the bar off the screen for good.
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

/// Progress over input files: bytes read out of their total size when every
/// input is a regular file, otherwise (standard input, a pipe) a spinner
/// counting the bytes read; the lines read are shown after either.
#[derive(Clone)]
pub struct ReadProgress {
    progress: Progress,
}

impl ReadProgress {
    /// Progress named `prefix` over inputs of `total_bytes` (`None`: unknown), when `enabled`.
    pub fn new(enabled: bool, prefix: &'static str, total_bytes: Option<u64>) -> ReadProgress {
        ReadProgress::drawn_to(enabled.then(ProgressDrawTarget::stderr), prefix, total_bytes)
    }

    fn drawn_to(
        target: Option<ProgressDrawTarget>,
        prefix: &'static str,
        total_bytes: Option<u64>,
    ) -> ReadProgress {
        ReadProgress { progress: Progress::drawn_to(target, prefix, Measure::Bytes, total_bytes) }
    }

    /// Reports `lines` lines and `bytes` bytes read so far.
    pub fn update(&self, lines: u64, bytes: u64) {
        self.progress.set_position(bytes);
        self.progress.set_message(|| format!("{} lines", HumanCount(lines)));
    }

    /// The [`Progress`] drawn, to write around it.
    pub fn progress(&self) -> &Progress {
        &self.progress
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_is_drawn_only_on_a_terminal_and_never_when_quiet() {
        assert!(wanted(false, true));
        assert!(!wanted(false, false));
        assert!(!wanted(true, true));
        assert!(!wanted(true, false));
    }

    #[test]
    fn every_template_is_valid_and_shows_a_bar_only_with_a_total() {
        for measure in [Measure::Bytes, Measure::Count("events")] {
            for total_known in [true, false] {
                let text = template(measure, total_known);
                assert!(style(measure, total_known).is_ok(), "{text}");
                assert_eq!(text.contains("bar}"), total_known, "{text}");
                assert_eq!(text.contains("{eta}"), total_known, "{text}");
                assert_eq!(text.contains("{spinner}"), !total_known, "{text}");
                assert!(text.contains("per_sec}") || text.contains("{rate}"), "a rate in {text}");
            }
        }
        assert!(template(Measure::Count("events"), true).contains("{human_len} events"));
    }

    #[test]
    fn a_disabled_progress_is_a_no_op() {
        let progress = Progress::new(false, "replay", Measure::Bytes, Some(10));
        assert!(progress.bar.is_none());
        progress.set_position(5);
        progress.set_message(|| unreachable!("a disabled progress builds no message"));
        assert_eq!(progress.suspend(|| 7), 7);
        progress.finish();
        let reading = ReadProgress::new(false, "replay", None);
        reading.update(1, 2);
        assert!(reading.progress().bar.is_none());
    }

    #[test]
    fn reading_counts_bytes_out_of_the_total_when_it_is_known() {
        // Enabled, but drawn nowhere.
        let files = ReadProgress::drawn_to(Some(ProgressDrawTarget::hidden()), "replay", Some(1000));
        files.update(3, 600);
        let bar = files.progress().bar.as_ref().map(|bar| (bar.position(), bar.length(), bar.message()));
        assert_eq!(bar, Some((600, Some(1000), "3 lines".to_string())));
        files.progress().finish();
        let stdin = ReadProgress::drawn_to(Some(ProgressDrawTarget::hidden()), "replay", None);
        stdin.update(3, 2048);
        let bar = stdin.progress().bar.as_ref().map(|bar| (bar.position(), bar.length(), bar.message()));
        assert_eq!(bar, Some((2048, None, "3 lines".to_string())));
        stdin.progress().finish();
    }
}
