#!/usr/bin/env bash
# A real single-node SLURM on this machine, for the scale-out check (bench/scaleout.py --slurm).
#
#   bench/slurm.sh start DIR   install slurm-wlm + munge if missing (apt), start munged, slurmctld and
#                              slurmd with their state, spool, logs and pid files under DIR; wait until
#                              the node is idle
#   bench/slurm.sh stop DIR    stop exactly the daemons that `start DIR` started (by their pid files)
#
# Machine-wide effects, on purpose and only here: it writes /etc/slurm/slurm.conf (SLURM reads its
# config from there) and, if none exists, a munge key in /etc/munge. Needs root. Measured recipe:
# ../shared/SLURM_NOTES.md (Debian's SLURM 22.05 without systemd or cgroups).
set -euo pipefail
cmd=${1:?usage: bench/slurm.sh start|stop DIR}
dir=$(realpath -m "${2:?usage: bench/slurm.sh start|stop DIR}")

stop() {
  for pidfile in "$dir/slurmd.pid" "$dir/slurmctld.pid" "$dir/munged.pid"; do
    if [ -s "$pidfile" ]; then
      pid=$(cat "$pidfile")
      kill "$pid" 2>/dev/null || true
      for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      rm -f "$pidfile"
    fi
  done
}

case "$cmd" in
start)
  running=$(pgrep -r R,S,D -x slurmctld; pgrep -r R,S,D -x slurmd) || true
  if [ -n "$running" ]; then
    echo "a SLURM daemon is already running (pids $(echo $running)): stop it first" >&2; exit 1
  fi
  if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge >/dev/null
  fi
  mkdir -p /etc/munge /run/munge /var/log/munge /etc/slurm "$dir"/{state,spool,log}
  [ -s /etc/munge/munge.key ] || dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key status=none
  chown -R munge:munge /etc/munge /run/munge /var/log/munge && chmod 400 /etc/munge/munge.key
  if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    runuser -u munge -- /usr/sbin/munged --pid-file=/run/munge/munged.pid
    cp /run/munge/munged.pid "$dir/munged.pid"
  fi
  host=$(hostname)
  mem=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 * 9 / 10 ))
  cat > /etc/slurm/slurm.conf <<CONF
ClusterName=local
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
NodeName=$host CPUs=$(nproc) RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
CONF
  /usr/sbin/slurmctld
  /usr/sbin/slurmd
  for _ in $(seq 100); do
    sinfo -h -o %t 2>/dev/null | grep -qx idle && { echo "slurm up: $(sinfo -h -o '%P %D %t %c')"; exit 0; }
    sleep 0.2
  done
  echo "slurm did not come up; logs in $dir/log" >&2; stop; exit 1
  ;;
stop) stop ;;
*) echo "usage: bench/slurm.sh start|stop DIR" >&2; exit 2 ;;
esac
