//! Keys → [`Command`]s for the run.

use ratatui::crossterm::event::{Event, KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

/// What the operator asked the run to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Command {
    /// Stop the run (sessions in flight finish, the records are written): `q` or Ctrl-C.
    Stop,
    /// Pause the simulated clock, or resume it: `p`.
    TogglePause,
    /// Raise the time scale: `+` or `=` (the `+` key without Shift on most layouts).
    Faster,
    /// Lower the time scale: `-`.
    Slower,
}

/// The keys, for the footer.
pub const KEY_HELP: &[(&str, &str)] = &[
    ("q", "stop"),
    ("p", "pause/resume"),
    ("+", "faster"),
    ("-", "slower"),
];

/// The command of a key press, if it has one. Releases are ignored (terminals that report them
/// would otherwise toggle pause twice).
pub fn command(key: KeyEvent) -> Option<Command> {
    if key.kind == KeyEventKind::Release {
        return None;
    }
    // In raw mode Ctrl-C is a key, not a signal: it must stop the run like `q`.
    if key.modifiers.contains(KeyModifiers::CONTROL) {
        return match key.code {
            KeyCode::Char('c') | KeyCode::Char('C') => Some(Command::Stop),
            _ => None,
        };
    }
    match key.code {
        KeyCode::Char('q') | KeyCode::Char('Q') => Some(Command::Stop),
        KeyCode::Char('p') | KeyCode::Char('P') => Some(Command::TogglePause),
        KeyCode::Char('+') | KeyCode::Char('=') => Some(Command::Faster),
        KeyCode::Char('-') | KeyCode::Char('_') => Some(Command::Slower),
        _ => None,
    }
}

/// The command of a terminal event (only key presses have one).
pub fn command_of_event(event: &Event) -> Option<Command> {
    match event {
        Event::Key(key) => command(*key),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ratatui::crossterm::event::KeyEventState;

    fn press(code: KeyCode, modifiers: KeyModifiers) -> KeyEvent {
        KeyEvent::new(code, modifiers)
    }

    #[test]
    fn keys_map_to_commands() {
        let none = KeyModifiers::NONE;
        let cases = [
            (KeyCode::Char('q'), none, Some(Command::Stop)),
            (KeyCode::Char('Q'), KeyModifiers::SHIFT, Some(Command::Stop)),
            (
                KeyCode::Char('c'),
                KeyModifiers::CONTROL,
                Some(Command::Stop),
            ),
            (KeyCode::Char('c'), none, None),
            (KeyCode::Char('p'), none, Some(Command::TogglePause)),
            (
                KeyCode::Char('+'),
                KeyModifiers::SHIFT,
                Some(Command::Faster),
            ),
            (KeyCode::Char('='), none, Some(Command::Faster)),
            (KeyCode::Char('-'), none, Some(Command::Slower)),
            (KeyCode::Char('x'), none, None),
            (KeyCode::Esc, none, None),
            (KeyCode::Char('p'), KeyModifiers::CONTROL, None),
        ];
        for (code, modifiers, want) in cases {
            assert_eq!(
                command(press(code, modifiers)),
                want,
                "{code:?} {modifiers:?}"
            );
        }
    }

    #[test]
    fn releases_and_other_events_do_nothing() {
        let release = KeyEvent {
            code: KeyCode::Char('p'),
            modifiers: KeyModifiers::NONE,
            kind: KeyEventKind::Release,
            state: KeyEventState::NONE,
        };
        assert_eq!(command(release), None);
        let repeat = KeyEvent {
            kind: KeyEventKind::Repeat,
            code: KeyCode::Char('+'),
            ..release
        };
        assert_eq!(command(repeat), Some(Command::Faster));
        assert_eq!(command_of_event(&Event::Resize(80, 24)), None);
        assert_eq!(
            command_of_event(&Event::Key(press(KeyCode::Char('q'), KeyModifiers::NONE))),
            Some(Command::Stop)
        );
    }
}
