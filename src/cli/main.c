/* main.c — idunno entry point (placeholder until the client lands). */
#include <stdio.h>
int main(void)
{
    fprintf(stderr, "idunno: not built yet\n");
    return 1;
}
