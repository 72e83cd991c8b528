# etcd-harden firewall watchdog: the backstop of the firewall-apply task (like iptables-apply).
# Started detached (its own session, no terminal, stdio to /dev/null) before the new rules are
# applied, so it outlives the tool: a dropped ssh session (SIGHUP), a SIGKILL or the OOM killer.
# Plain POSIX sh, so it does not depend on Node working. Usage: sh -c SCRIPT NAME RUN_DIR CAP
#   RUN_DIR  the run directory: firewall-confirmed (the operator confirmed) or
#            firewall-watchdog.stop (the tool restored or ended the wait itself) stops it;
#            firewall-watchdog.deadline (epoch seconds, written by the tool) can bring the
#            deadline forward; the revert input files are there.
#   CAP      seconds from now after which it acts at the latest, whatever the files say.
# At the deadline, unless stopped, it restores what etcd-harden owned before (our chain and its
# INPUT jumps, or our nftables table) and writes firewall-watchdog-reverted. It exits then.
trap '' HUP INT QUIT
trap 'exit 0' TERM
dir=$1
cap=$(( $(date +%s) + $2 ))
echo $$ > "$dir/firewall-watchdog.pid"
trap 'rm -f "$dir/firewall-watchdog.pid"' EXIT
while :; do
	[ -e "$dir/firewall-confirmed" ] && exit 0
	[ -e "$dir/firewall-watchdog.stop" ] && exit 0
	deadline=$cap
	wanted=
	[ -r "$dir/firewall-watchdog.deadline" ] && read -r wanted < "$dir/firewall-watchdog.deadline"
	case $wanted in
		'' | *[!0-9]*) ;;
		*) [ "$wanted" -lt "$cap" ] && deadline=$wanted ;;
	esac
	[ "$(date +%s)" -ge "$deadline" ] && break
	sleep 1
done
failed=0
report=
# step DESCRIPTION: the command's status goes into the report.
step() {
	if [ "$2" -eq 0 ]; then report="$report$1: ok
"; else report="$report$1: FAILED (exit $2)
"; failed=1; fi
}
{{REVERT}}
{
	echo "time: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
	echo "the new firewall rules were not confirmed in time and the tool was gone; the watchdog restored the previous rules"
	printf '%s' "$report"
	[ "$failed" -eq 0 ] && echo "result: restored" || echo "result: FAILED (see the lines above; the saved state is in firewall-before.json)"
} > "$dir/firewall-watchdog-reverted.tmp" && mv -f "$dir/firewall-watchdog-reverted.tmp" "$dir/firewall-watchdog-reverted"
exit 0
