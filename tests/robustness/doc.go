// Package robustness holds fedreport's fault tests that need real
// processes: the fedreport binary is built once and its node and coordinator
// are killed, stopped and restarted the way an operator's machine would.
package robustness
