"""Host: a prepared competition over HTTP for many participants (`serve`, `invite`, `submit`),
graded by grading's grader under its rules; never imports fitting."""
