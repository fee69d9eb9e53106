/* main.c — idunnod entry point (placeholder until the node runtime lands). */
#include <stdio.h>
int main(void)
{
    fprintf(stderr, "idunnod: not built yet\n");
    return 1;
}
