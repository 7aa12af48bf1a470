"""Messages, events and streams between workflows, and the wake-ups that end their waits."""
