"""The Pylon control plane (`pylon-tui`): a Textual app that attaches to a buyer or node daemon."""
