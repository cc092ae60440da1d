#!/usr/bin/env bash
# The simplest supervisor: a shell loop around one eddy process of a cluster.
#
#   deploy/supervise.sh eddy run pipeline.toml --processes 3 --process 1 \
#       --hostfile hosts.txt --checkpoint-dir ck --out out
#
# Runs the command with --resume (added when missing: with no checkpoint yet
# it starts from the beginning) and runs it again whenever eddy exits with
# 3 (a peer was lost), 4 (the cluster did not form) or is killed by a signal
# (SIGKILL, the OOM killer), so that a cluster whose processes all run under
# such loops re-forms after any failure and goes on from the newest
# checkpoint every process holds. It stops on success (0) and on 1 and 2:
# configuration or data errors that a restart would not mend. systemd (deploy/systemd/) and
# Kubernetes (deploy/kubernetes/) do the same with RestartPreventExitStatus
# and the pod's restart policy.
#
# EDDY_RESTART_DELAY_S (default 1): pause between runs.
# EDDY_MAX_RESTARTS (default: no limit).
# EDDY_PID_FILE: where to write the running eddy's pid (tests kill it).
set -uo pipefail
[ $# -ge 1 ] || { echo "usage: supervise.sh EDDY-COMMAND..." >&2; exit 2; }
args=("$@")
case " ${args[*]} " in *" --resume "*) ;; *) args+=(--resume) ;; esac
delay=${EDDY_RESTART_DELAY_S:-1}
attempt=0
stopping=0
child=
# Stopping the supervisor stops eddy the way Ctrl-C does (drain, summary), for good.
trap 'stopping=1; [ -n "$child" ] && kill -INT "$child" 2>/dev/null' TERM INT
while :; do
  attempt=$((attempt + 1))
  # Injected crash points (EDDY_CRASH_AT) fire in the first attempt only.
  EDDY_ATTEMPT=$attempt "${args[@]}" &
  child=$!
  [ -n "${EDDY_PID_FILE:-}" ] && echo "$child" > "$EDDY_PID_FILE"
  wait "$child"
  code=$?
  # A trap ends `wait` early: wait for eddy itself.
  while kill -0 "$child" 2>/dev/null; do
    wait "$child"
    code=$?
  done
  [ "$stopping" = 1 ] && exit "$code"
  case $code in
    0) exit 0 ;;
    1|2) echo "supervise.sh: eddy exited with $code; not restarting" >&2; exit "$code" ;;
    *)
      if [ -n "${EDDY_MAX_RESTARTS:-}" ] && [ "$attempt" -gt "$EDDY_MAX_RESTARTS" ]; then
        echo "supervise.sh: eddy exited with $code; $EDDY_MAX_RESTARTS restarts done, giving up" >&2
        exit "$code"
      fi
      echo "supervise.sh: eddy exited with $code; starting it again (attempt $((attempt + 1)))" >&2
      sleep "$delay"
      ;;
  esac
done
