"""``kubetasks dashboard``: runs, queues, batches, tasks and schedules in a browser, served
from a watch-fed cache, with actions done in each person's own name."""
