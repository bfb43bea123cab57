#!/bin/sh
# np6-sync in its image, from the repository's root, after `docker build -t np6-sync .`:
# the job folder, the settings and the data read-only, the state on a named volume, the
# root read-only and /tmp a tmpfs. The job keeps its state on /state
# (examples/docker/jobs/newsletter-fr.yaml): a job whose state sits beside its file would
# lock and write on the read-only /jobs. tests/test_examples.py runs this command's mounts.
exec docker run --rm --read-only --tmpfs /tmp -e NP6_API_KEY \
  -v "$PWD/examples/docker/jobs:/jobs:ro" -v "$PWD/config:/config:ro" \
  -v "$PWD/jobs/data:/data:ro" -v np6-state:/state \
  np6-sync run /jobs/newsletter-fr.yaml
