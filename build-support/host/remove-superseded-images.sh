#!/usr/bin/env bash
# Remove our images that no `latest-*` tag names any more: images of earlier commits, which only
# their version tags (dynamo:<version>-<framework>-<target>) keep, and would keep their layers (an
# engine image's are ~10 GB) on a machine that builds every commit, as CI's does.
# Usage: remove-superseded-images.sh   (our images carry the ai.dynamo.framework label)
set -euo pipefail
for id in $(docker image ls -q --filter label=ai.dynamo.framework | sort -u); do
  tags=$(docker image inspect -f '{{join .RepoTags " "}}' "$id")
  case " $tags " in
    *":latest-"*) ;;
    "  ") docker image rm "$id" >/dev/null 2>&1 || true ;;
    # shellcheck disable=SC2086 # one tag per word
    *) docker image rm $tags >/dev/null 2>&1 || true ;;
  esac
done
