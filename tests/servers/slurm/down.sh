#!/bin/bash
# Stop what up.sh started, by PID files only (munged is shared and left running).
BASE=$1
for name in slurmd slurmctld; do
    [ -s "$BASE/$name.pid" ] && kill "$(cat "$BASE/$name.pid")" 2>/dev/null
done
sleep 0.5
[ -s "$BASE/netns.pid" ] && kill "$(cat "$BASE/netns.pid")" 2>/dev/null
rm -f "$BASE/netns.pid"
exit 0
