"""Default limits of judging a remote request (standard library only: the CLI reads them at start-up)."""

# OpenRLHF's own client waits 180 s for an answer; a deadline below it answers before the client gives up.
DEFAULT_TIMEOUT_S = 150.0
# A response longer than this is not run: nothing a policy writes for a PIE-sized problem comes near it, and
# a runaway generation should not cost a sandbox run.
DEFAULT_MAX_PROGRAM_CHARS = 100_000
