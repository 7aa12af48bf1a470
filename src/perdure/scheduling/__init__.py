"""Cron schedules: parsing over croniter, and the scheduler loop that starts each tick once."""
