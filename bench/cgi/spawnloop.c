/* The spawn limit of bench/cgi.sh: PARALLEL processes each run PROGRAM
 * with posix_spawn and wait for it, in a loop, for SECONDS (stdout to
 * /dev/null); prints the total runs per second. No gateway can answer
 * CGI requests faster than this on the same machine.
 *
 *     spawnloop PROGRAM SECONDS PARALLEL
 */
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <fcntl.h>

extern char **environ;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* One loop; returns how many runs it completed. */
static long loop(const char *program, double seconds)
{
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    char *argv[] = {(char *)program, NULL};
    double end = now() + seconds;
    long runs = 0;
    while (now() < end) {
        pid_t pid;
        int status;
        if (posix_spawn(&pid, program, &fa, NULL, argv, environ) != 0) {
            perror("posix_spawn");
            exit(1);
        }
        waitpid(pid, &status, 0);
        runs++;
    }
    return runs;
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: spawnloop PROGRAM SECONDS PARALLEL\n");
        return 2;
    }
    double seconds = atof(argv[2]);
    int parallel = atoi(argv[3]);
    int fds[2];
    if (pipe(fds) != 0) {
        perror("pipe");
        return 1;
    }
    for (int i = 0; i < parallel; i++) {
        if (fork() == 0) {
            long runs = loop(argv[1], seconds);
            if (write(fds[1], &runs, sizeof runs) != sizeof runs)
                _exit(1);
            _exit(0);
        }
    }
    long total = 0, runs;
    for (int i = 0; i < parallel; i++) {
        if (read(fds[0], &runs, sizeof runs) == sizeof runs)
            total += runs;
        wait(NULL);
    }
    printf("%.0f\n", total / seconds);
    return 0;
}
