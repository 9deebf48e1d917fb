/* The smallest CGI program: the figure bench/cgi.sh measures gateways
 * with, since its own cost is next to nothing but its spawn. */
#include <stdio.h>

int main(void)
{
    fputs("Content-Type: text/plain\r\n\r\nHello, world!\n", stdout);
    return 0;
}
