#!/bin/sh
# Entrypoint of every dynamo-images container (run under tini): one banner line on stderr, so that
# stdout stays the command's own, then group-writable files (GID 0, OpenShift) and the command.
umask 002
if [ -z "${DYNAMO_NO_BANNER:-}" ]; then
  echo "== ${DYNAMO_IMAGE:-dynamo-images} ${DYNAMO_VERSION:-unversioned} (commit ${DYNAMO_COMMIT_SHA:-unknown})" >&2
fi
exec "$@"
