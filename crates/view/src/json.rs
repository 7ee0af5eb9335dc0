//! JSON Lines: exactly one serialized [`Envelope`] per line. The field names are the
//! documented event contract (see `engine::event`), so this module adds nothing of its own.

use crate::engine::event::Envelope;

/// One event as one line of JSON (no trailing newline).
pub fn format(env: &Envelope) -> String {
    // Serializing these plain data types cannot fail in practice; if it ever does, still
    // emit one valid JSON line so consumers parsing line by line keep going.
    serde_json::to_string(env).unwrap_or_else(|e| {
        serde_json::json!({
            "type": "view_error",
            "ts": env.ts,
            "release": env.release,
            "message": format!("could not serialize event: {e}"),
        })
        .to_string()
    })
}
