//! The live terminal dashboard of `shopsim run`, and its one-line form for runs without a
//! terminal.
//!
//! The run owns the figures; the dashboard only shows copies. The run publishes a
//! [`DashboardState`] on a `tokio::sync::watch` channel a few times a second (off the agents'
//! path), [`run_dashboard`] draws the latest one at a fixed rate and sends the operator's keys
//! back as [`Command`]s on an unbounded channel. Without a terminal ([`is_terminal`] false, or
//! `--no-tui`) the run prints [`status_line()`] instead.
//!
//! **Logs must not write to stdout or stderr while the screen is up**: log to the JSON file
//! only, and add a stderr layer only when the dashboard is not shown.
//!
//! ## Layout
//! - [`state`]: [`DashboardState`] (plain data) with helpers that fill it from a metrics
//!   [`Snapshot`](crate::sim::metrics::Snapshot), the actions' outage and reload events, and the
//!   [`RateTracker`] that turns successive totals into rates.
//! - [`view`]: [`draw`]: the screen as a pure function of the state (full and compact layouts).
//! - [`input`]: keys → [`Command`].
//! - [`tui`]: [`run_dashboard`]: terminal setup and restore, the frame loop, the key reader.
//! - [`status_line`](mod@status_line): the one-line status.
//!
//! ## Wiring (in the run)
//! ```text
//! let (state_tx, state_rx) = watch::channel(DashboardState::new(run_id, set, version, start, end, scale));
//! let (cmd_tx, mut cmd_rx) = mpsc::unbounded_channel();
//! let screen = tokio::spawn(dashboard::run_dashboard(state_rx, cmd_tx, cancel.clone()));
//! // every 250 ms: fill a state (see `state`), state.refresh(&mut tracker), state_tx.send_replace(state)
//! // on cmd_rx: Stop → cancel; TogglePause → clock pause/resume; Faster/Slower → clock.set_scale
//! ```

mod format;
pub mod input;
pub mod state;
pub mod status_line;
pub mod tui;
pub mod view;

pub use input::Command;
pub use state::{
    Counters, DashboardState, EndpointRow, OutageState, RateTracker, Rates, ReloadStatus, Sample,
};
pub use status_line::status_line;
pub use tui::{is_terminal, run_dashboard};
pub use view::draw;
