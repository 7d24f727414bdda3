# Sourced by the benchmark scripts. `stolen_ms` prints the CPU time this machine's CPUs
# were ready to run but the hypervisor ran something else ("steal" in /proc/stat, summed
# over every CPU), in milliseconds since boot; 0 where there is no such figure. The
# difference across a measurement is how much of it the host took away: on a shared
# virtual machine a tail of milliseconds often lines up with it.
stolen_ms() {
    awk -v hz="$(getconf CLK_TCK 2>/dev/null || echo 100)" \
        '$1 == "cpu" { print int(($9 + 0) * 1000 / hz); found = 1; exit } END { if (!found) print 0 }' \
        /proc/stat 2>/dev/null || echo 0
}
