/* Passwords and codes come from a person at a terminal (echo off) or from
 * a pipe, never from the command line, where every user of the machine
 * can read them in /proc. Reads go byte by byte through read(2) so that no
 * stdio buffer keeps a copy of a secret, or swallows the next line. */
#include "cli.h"

#include "ff_secret.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

/* The terminal's settings while echo is off, for the signal handler. */
static struct termios saved_tio;
static volatile sig_atomic_t tio_saved;

/* A signal during the prompt must not leave the terminal without echo. */
static void on_signal(int sig)
{
    if (tio_saved)
        (void)tcsetattr(STDIN_FILENO, TCSAFLUSH, &saved_tio);
    (void)signal(sig, SIG_DFL);
    (void)raise(sig);
}

bool prompt_is_tty(void)
{
    return isatty(STDIN_FILENO) == 1;
}

static void say(const char *s)
{
    size_t n = strlen(s);
    while (n > 0) {
        ssize_t w = write(STDERR_FILENO, s, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return;
        s += w;
        n -= (size_t)w;
    }
}

/* Reads up to '\n' into buf (cap bytes plus a NUL). */
static int read_line(char *buf, size_t cap, const char *what, struct ff_err *err)
{
    size_t len = 0;
    bool any = false;
    for (;;) {
        char ch;
        ssize_t n = read(STDIN_FILENO, &ch, 1);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return ff_err_set(err, FF_EIO, "cannot read the %s: %s", what, strerror(errno));
        if (n == 0) {
            if (!any)
                return ff_err_set(err, FF_EINVAL, "no %s given (end of input)", what);
            break;
        }
        any = true;
        if (ch == '\n')
            break;
        if (len == cap) {
            /* Drain the rest of the line so the next prompt starts clean. */
            while (read(STDIN_FILENO, &ch, 1) == 1 && ch != '\n')
                ;
            return ff_err_set(err, FF_ETOOBIG, "the %s is longer than %d bytes", what,
                              CLI_SECRET_MAX);
        }
        buf[len++] = ch;
    }
    if (len > 0 && buf[len - 1] == '\r')
        len--;
    buf[len] = '\0';
    if (len == 0)
        return ff_err_set(err, FF_EINVAL, "the %s is empty", what);
    return 0;
}

int prompt_line(const char *label, const char *what, bool echo, char **out,
                struct ff_err *err)
{
    *out = NULL;
    char *buf = malloc(CLI_SECRET_MAX + 1);
    if (buf == NULL)
        return ff_err_set(err, FF_ENOMEM, "out of memory");
    bool tty = prompt_is_tty();
    bool quiet = false;
    struct sigaction sa, old_int, old_term, old_hup;
    if (tty) {
        /* Echo goes off before the prompt shows, so nothing typed after
         * the prompt can be echoed; TCSAFLUSH drops what was typed before
         * it, which the terminal may already have shown. */
        if (!echo && tcgetattr(STDIN_FILENO, &saved_tio) == 0) {
            struct termios t = saved_tio;
            t.c_lflag &= ~(tcflag_t)(ECHO | ECHONL);
            t.c_lflag |= ICANON;
            memset(&sa, 0, sizeof(sa));
            sa.sa_handler = on_signal;
            (void)sigemptyset(&sa.sa_mask);
            (void)sigaction(SIGINT, &sa, &old_int);
            (void)sigaction(SIGTERM, &sa, &old_term);
            (void)sigaction(SIGHUP, &sa, &old_hup);
            tio_saved = 1;
            quiet = tcsetattr(STDIN_FILENO, TCSAFLUSH, &t) == 0;
        }
        say(label);
    }
    int rc = read_line(buf, CLI_SECRET_MAX, what, err);
    if (tio_saved) {
        /* TCSADRAIN keeps what is typed ahead (the next answer). */
        if (quiet)
            (void)tcsetattr(STDIN_FILENO, TCSADRAIN, &saved_tio);
        tio_saved = 0;
        (void)sigaction(SIGINT, &old_int, NULL);
        (void)sigaction(SIGTERM, &old_term, NULL);
        (void)sigaction(SIGHUP, &old_hup, NULL);
        /* The user's Enter was not echoed. */
        say("\n");
    }
    if (rc != 0) {
        ff_secret_wipe(buf, CLI_SECRET_MAX + 1);
        free(buf);
        return rc;
    }
    *out = buf;
    return 0;
}
