"""``kubetasks dashboard``: runs, queues, batches, tasks and schedules in a browser, served
from a watch-fed cache (work in progress on the dashboard-wip branch, issue 17)."""
