/* The program scenario 1 executes: built once static, once dynamic. */
int main(void) { return 0; }
