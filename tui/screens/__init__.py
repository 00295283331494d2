"""The TUI's screens: one per daemon kind, the drill-downs, and the dialogs."""
