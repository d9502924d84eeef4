//! Grammar constraints for R1 turns: JSON-schema tool calls and answers as token masks, on llguidance.
