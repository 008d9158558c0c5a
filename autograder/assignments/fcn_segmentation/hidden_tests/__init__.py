"""Hidden tests: run by the trusted grader only, never shipped to students."""
