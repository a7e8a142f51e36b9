/* The seccomp profile of a RUN step, as the linux.seccomp object of runc's
 * config.json.
 *
 * Same spirit as Docker's default profile for a container with the default
 * capabilities: everything not listed fails with EPERM; the list is what
 * ordinary programs, package managers, compilers and test suites use. Left
 * out: mounting and namespaces (mount, umount2, unshare, setns, pivot_root,
 * clone with CLONE_NEW* flags, the new mount API), kernel keyrings, bpf,
 * perf, ptrace and process_vm_*, kernel modules, kexec, reboot, swap,
 * setting clocks or the host name, quotactl, acct, userfaultfd,
 * open_by_handle_at, and personality other than the harmless values.
 *
 * Filters apply to the host architecture only: a guest under qemu-user
 * makes its system calls through qemu, so the kernel sees the host's (on
 * x86_64 also the i386 and x32 numbers, which a process can reach, are
 * filtered). runc resolves names per architecture and skips names an
 * architecture lacks, so one list serves x86_64, aarch64 and arm. */
#include "worker.h"

#include <string.h>

/* CLONE_NEWNS | CLONE_NEWCGROUP | CLONE_NEWUTS | CLONE_NEWIPC |
 * CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNET: clone may pass none. */
#define SECCOMP_CLONE_NS_FLAGS 0x7E020000u
#define SECCOMP_EPERM 1
#define SECCOMP_ENOSYS 38

/* Files, directories and descriptors. */
static const char *const sys_files[] = {
    "access", "chdir", "chmod", "chown", "chown32", "close", "close_range",
    "copy_file_range", "creat", "dup", "dup2", "dup3", "faccessat", "faccessat2",
    "fadvise64", "fadvise64_64", "fallocate", "fchdir", "fchmod", "fchmodat", "fchown",
    "fchown32", "fchownat", "fcntl", "fcntl64", "fdatasync", "fgetxattr", "flistxattr",
    "flock", "fremovexattr", "fsetxattr", "fstat", "fstat64", "fstatat64", "fstatfs",
    "fstatfs64", "fsync", "ftruncate", "ftruncate64", "futimesat", "getcwd", "getdents",
    "getdents64", "getxattr", "inotify_add_watch", "inotify_init", "inotify_init1",
    "inotify_rm_watch", "lchown", "lchown32", "lgetxattr", "link", "linkat", "listxattr",
    "llistxattr", "_llseek", "lremovexattr", "lseek", "lsetxattr", "lstat", "lstat64",
    "mkdir", "mkdirat", "mknod", "mknodat", "newfstatat", "open", "openat", "openat2",
    "pipe", "pipe2", "pread64", "preadv", "preadv2", "pwrite64", "pwritev", "pwritev2",
    "read", "readahead", "readlink", "readlinkat", "readv", "removexattr", "rename",
    "renameat", "renameat2", "rmdir", "sendfile", "sendfile64", "setxattr", "splice",
    "stat", "stat64", "statfs", "statfs64", "statx", "symlink", "symlinkat", "sync",
    "sync_file_range", "syncfs", "tee", "truncate", "truncate64", "umask", "unlink",
    "unlinkat", "utime", "utimensat", "utimensat_time64", "utimes", "vmsplice", "write",
    "writev", "name_to_handle_at", "fanotify_mark",
};

/* Memory, processes, threads and signals. */
static const char *const sys_process[] = {
    "arch_prctl", "brk", "capget", "capset", "execve", "execveat", "exit", "exit_group",
    "fork", "futex", "futex_time64", "futex_waitv", "get_robust_list", "get_thread_area",
    "getcpu", "getegid", "getegid32", "geteuid", "geteuid32", "getgid", "getgid32",
    "getgroups", "getgroups32", "getitimer", "getpgid", "getpgrp", "getpid", "getppid",
    "getpriority", "getrandom", "getresgid", "getresgid32", "getresuid", "getresuid32",
    "getrlimit", "getrusage", "getsid", "gettid", "getuid", "getuid32", "ioprio_get",
    "ioprio_set", "kill", "madvise", "membarrier", "memfd_create", "mincore", "mlock",
    "mlock2", "mlockall", "mmap", "mmap2", "modify_ldt", "mprotect", "mremap", "msync",
    "munlock", "munlockall", "munmap", "pidfd_open", "pidfd_send_signal", "pkey_alloc",
    "pkey_free", "pkey_mprotect", "prctl", "prlimit64", "remap_file_pages",
    "restart_syscall", "rseq", "rt_sigaction", "rt_sigpending", "rt_sigprocmask",
    "rt_sigqueueinfo", "rt_sigreturn", "rt_sigsuspend", "rt_sigtimedwait",
    "rt_sigtimedwait_time64", "rt_tgsigqueueinfo", "sched_get_priority_max",
    "sched_get_priority_min", "sched_getaffinity", "sched_getattr", "sched_getparam",
    "sched_getscheduler", "sched_rr_get_interval", "sched_rr_get_interval_time64",
    "sched_setaffinity", "sched_setattr", "sched_setparam", "sched_setscheduler",
    "sched_yield", "seccomp", "set_robust_list", "set_thread_area", "set_tid_address",
    "setfsgid", "setfsgid32", "setfsuid", "setfsuid32", "setgid", "setgid32", "setgroups",
    "setgroups32", "setitimer", "setpgid", "setpriority", "setregid", "setregid32",
    "setresgid", "setresgid32", "setresuid", "setresuid32", "setreuid", "setreuid32",
    "setrlimit", "setsid", "setuid", "setuid32", "sigaltstack", "sigprocmask", "sigreturn",
    "tgkill", "tkill", "ugetrlimit", "vfork", "wait4", "waitid", "waitpid",
    /* 32-bit ARM's own calls */
    "arm_fadvise64_64", "arm_sync_file_range", "sync_file_range2", "breakpoint",
    "cacheflush", "set_tls",
};

/* Time, polling, timers, IPC and sockets. */
static const char *const sys_io[] = {
    "alarm", "clock_getres", "clock_getres_time64", "clock_gettime", "clock_gettime64",
    "clock_nanosleep", "clock_nanosleep_time64", "gettimeofday", "nanosleep", "pause",
    "time", "times", "timer_create", "timer_delete", "timer_getoverrun", "timer_gettime",
    "timer_gettime64", "timer_settime", "timer_settime64", "timerfd_create",
    "timerfd_gettime", "timerfd_gettime64", "timerfd_settime", "timerfd_settime64",
    "epoll_create", "epoll_create1", "epoll_ctl", "epoll_ctl_old", "epoll_pwait",
    "epoll_pwait2", "epoll_wait", "epoll_wait_old", "eventfd", "eventfd2", "poll", "ppoll",
    "ppoll_time64", "pselect6", "pselect6_time64", "select", "_newselect", "signalfd",
    "signalfd4", "io_cancel", "io_destroy", "io_getevents", "io_pgetevents",
    "io_pgetevents_time64", "io_setup", "io_submit", "ioctl", "ipc", "mq_getsetattr",
    "mq_notify", "mq_open", "mq_timedreceive", "mq_timedreceive_time64", "mq_timedsend",
    "mq_timedsend_time64", "mq_unlink", "msgctl", "msgget", "msgrcv", "msgsnd", "semctl",
    "semget", "semop", "semtimedop", "semtimedop_time64", "shmat", "shmctl", "shmdt",
    "shmget", "accept", "accept4", "bind", "connect", "getpeername", "getsockname",
    "getsockopt", "listen", "recv", "recvfrom", "recvmmsg", "recvmmsg_time64", "recvmsg",
    "send", "sendmmsg", "sendmsg", "sendto", "setsockopt", "shutdown", "socket",
    "socketcall", "socketpair", "sysinfo", "uname",
};

/* personality(2) values that change nothing dangerous: PER_LINUX,
 * PER_LINUX32, UNAME26, UNAME26|PER_LINUX32 and the query 0xffffffff (no
 * ADDR_NO_RANDOMIZE, no READ_IMPLIES_EXEC). */
static const json_int_t personality_ok[] = {0x0, 0x8, 0x20000, 0x20008, 0xffffffff};

static int add_names(json_t *names, const char *const *list, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (json_array_append_new(names, json_string(list[i])) != 0)
            return FF_ENOMEM;
    }
    return 0;
}

static json_t *arg_rule(const char *name, json_int_t index, json_int_t value,
                        json_int_t value_two, const char *op)
{
    json_t *arg = json_pack("{sIsIsIss}", "index", index, "value", value, "valueTwo",
                            value_two, "op", op);
    return json_pack("{s[s]sss[o]}", "names", name, "action", "SCMP_ACT_ALLOW", "args", arg);
}

static json_t *allow_list(void)
{
    json_t *names = json_array();
    if (names == NULL ||
        add_names(names, sys_files, sizeof(sys_files) / sizeof(sys_files[0])) != 0 ||
        add_names(names, sys_process, sizeof(sys_process) / sizeof(sys_process[0])) != 0 ||
        add_names(names, sys_io, sizeof(sys_io) / sizeof(sys_io[0])) != 0) {
        json_decref(names);
        return NULL;
    }
    return json_pack("{soss}", "names", names, "action", "SCMP_ACT_ALLOW");
}

static int add_rules(json_t *rules)
{
    if (json_array_append_new(rules, allow_list()) != 0)
        return FF_ENOMEM;
    /* Threads and fork, but no new namespaces: (flags & value) == valueTwo. */
    if (json_array_append_new(rules, arg_rule("clone", 0, SECCOMP_CLONE_NS_FLAGS, 0,
                                              "SCMP_CMP_MASKED_EQ")) != 0)
        return FF_ENOMEM;
    for (size_t i = 0; i < sizeof(personality_ok) / sizeof(personality_ok[0]); i++) {
        if (json_array_append_new(rules, arg_rule("personality", 0, personality_ok[i], 0,
                                                  "SCMP_CMP_EQ")) != 0)
            return FF_ENOMEM;
    }
    /* clone3 passes its flags in memory a filter cannot read; ENOSYS makes
     * glibc and musl use clone, which the rule above checks. */
    json_t *clone3 = json_pack("{s[s]sssi}", "names", "clone3", "action", "SCMP_ACT_ERRNO",
                               "errnoRet", SECCOMP_ENOSYS);
    if (json_array_append_new(rules, clone3) != 0)
        return FF_ENOMEM;
    return 0;
}

static json_t *arches_for(const char *machine)
{
    if (strcmp(machine, "x86_64") == 0)
        return json_pack("[sss]", "SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32");
    if (strcmp(machine, "aarch64") == 0 || strcmp(machine, "arm64") == 0)
        return json_pack("[ss]", "SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM");
    if (strncmp(machine, "armv7", 5) == 0 || strncmp(machine, "armv8", 5) == 0)
        return json_pack("[s]", "SCMP_ARCH_ARM");
    return NULL;
}

int seccomp_profile_new(const char *host_machine, json_t **out, struct ff_err *err)
{
    json_t *arches = arches_for(host_machine);
    if (arches == NULL)
        return ff_err_set(err, FF_EINVAL, "seccomp: no profile for host architecture \"%s\" "
                          "(expected x86_64, aarch64 or armv7l)", host_machine);
    json_t *rules = json_array();
    if (rules == NULL || add_rules(rules) != 0) {
        json_decref(rules);
        json_decref(arches);
        return ff_err_set(err, FF_ENOMEM, "seccomp: out of memory");
    }
    /* json_pack takes over arches and rules, also when it fails. */
    json_t *profile = json_pack("{sssisoso}", "defaultAction", "SCMP_ACT_ERRNO",
                                "defaultErrnoRet", SECCOMP_EPERM, "architectures", arches,
                                "syscalls", rules);
    if (profile == NULL)
        return ff_err_set(err, FF_ENOMEM, "seccomp: out of memory");
    *out = profile;
    return 0;
}
