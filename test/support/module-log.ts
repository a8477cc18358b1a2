/**
 * Preload (`node --import <this file>`) that records every module the process resolves: one URL a
 * line, appended to the file `$BUILDCACHE_TEST_MODULE_LOG`. Tests use it to show that a command
 * does not load a package it does not need.
 */
import { register } from 'node:module';

register(new URL('./module-log-hooks.js', import.meta.url));
