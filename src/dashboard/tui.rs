//! The terminal loop: draws the latest [`DashboardState`] at a steady rate and turns keys into
//! [`Command`]s.
//!
//! **While the screen is up nothing else may write to stdout or stderr** — a log line would tear
//! the screen. Log to the JSON file only, and add a stderr layer only when there is no terminal
//! (see [`is_terminal`]) or with `--no-tui`.

use std::io::{self, IsTerminal};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use ratatui::crossterm::event::{self, Event};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use super::input::{Command, command_of_event};
use super::state::DashboardState;
use super::view;

/// Time between two frames (8 per second): smooth enough for counters, cheap on 2 cores.
pub const FRAME: Duration = Duration::from_millis(125);

/// How long the key reader waits for a key before checking whether it should stop.
const KEY_POLL: Duration = Duration::from_millis(100);

/// True when stdout is a terminal (the dashboard can be shown). When it is not — output piped
/// to a file, CI — the run prints [`status_line`](super::status_line()) instead.
pub fn is_terminal() -> bool {
    io::stdout().is_terminal()
}

/// Restores the terminal when dropped: on a normal end, on cancel, on an error, and when the
/// future is dropped mid-await. (ratatui's panic hook covers panics.)
struct Restore;

impl Drop for Restore {
    fn drop(&mut self) {
        ratatui::restore();
    }
}

/// Tells the key reader to stop when dropped, including when the dashboard's future is dropped.
struct StopReader(Arc<AtomicBool>);

impl Drop for StopReader {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Shows the dashboard until `cancel` fires, the state's sender is dropped (the run is over),
/// or the operator insists on leaving (a second `q` / Ctrl-C after a first one).
///
/// Draws at [`FRAME`] intervals from the latest value of `state` only (so a busy run never
/// queues frames) and sends every key command to `commands`; the first [`Command::Stop`] keeps
/// the screen up, showing "stopping", until the run cancels. Keys are read by a blocking task
/// that polls crossterm, so the runtime's workers never block on the terminal. The terminal is
/// put back as it was on every way out.
pub async fn run_dashboard(
    mut state: watch::Receiver<DashboardState>,
    commands: mpsc::UnboundedSender<Command>,
    cancel: CancellationToken,
) -> io::Result<()> {
    if !is_terminal() {
        // Checked first so nothing (not even the restore sequence) is written to a pipe or file.
        return Err(io::Error::other(
            "stdout is not a terminal: use the status line instead of the dashboard",
        ));
    }
    // `try_init` is `init` without the panic on a failed setup: it enables raw mode, enters the
    // alternate screen and installs the panic hook that restores the terminal. The guard is
    // made first so a setup that fails halfway is undone too.
    let restore = Restore;
    let mut terminal = ratatui::try_init()?;

    let (keys_tx, mut keys) = mpsc::unbounded_channel();
    let stop = StopReader(Arc::new(AtomicBool::new(false)));
    let reader = {
        let stop = stop.0.clone();
        tokio::task::spawn_blocking(move || read_events(&keys_tx, &stop))
    };

    let mut tick = tokio::time::interval(FRAME);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut stopping = false;
    let result = loop {
        let redraw = tokio::select! {
            _ = cancel.cancelled() => break Ok(()),
            _ = tick.tick() => true,
            ev = keys.recv() => match ev {
                Some(Ok(ev)) => match command_of_event(&ev) {
                    Some(cmd) => {
                        if cmd == Command::Stop && stopping {
                            break Ok(()); // asked twice: leave now, the run goes on stopping
                        }
                        stopping |= cmd == Command::Stop;
                        if commands.send(cmd).is_err() {
                            break Ok(()); // nobody listens: the run is over
                        }
                        true
                    }
                    None => matches!(ev, Event::Resize(..)),
                },
                Some(Err(e)) => break Err(e),
                None => break Err(io::Error::other("the terminal key reader stopped")),
            },
        };
        if state.has_changed().is_err() {
            break Ok(()); // the run dropped its sender: it is over
        }
        if redraw {
            // Clone out of the channel so the run never waits on a frame being written.
            let mut current = state.borrow_and_update().clone();
            current.stopping |= stopping;
            if let Err(e) = terminal.draw(|frame| view::draw(frame, &current)) {
                break Err(e);
            }
        }
    };
    drop(stop);
    drop(terminal);
    drop(restore);
    // The reader notices the flag within one poll; wait for it so it never reads keys meant for
    // whatever runs after the dashboard (a join error means it panicked: nothing to clean up).
    let _ = reader.await;
    result
}

/// Forwards terminal events until `stop` is set, the receiver is gone, or reading fails.
fn read_events(tx: &mpsc::UnboundedSender<io::Result<Event>>, stop: &AtomicBool) {
    while !stop.load(Ordering::Relaxed) {
        let ready = match event::poll(KEY_POLL) {
            Ok(ready) => ready,
            Err(e) => {
                let _ = tx.send(Err(e));
                return;
            }
        };
        if !ready {
            continue;
        }
        let ev = event::read();
        let failed = ev.is_err();
        if tx.send(ev).is_err() || failed {
            return;
        }
    }
}
