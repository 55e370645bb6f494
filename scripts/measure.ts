/**
 * Helpers the load scripts share (`npm run bench`, `npm run soak:rate-limit`): the workerd
 * processes this script started, their CPU time, and the one deployment of a bench worker config.
 */
import { readdirSync, readFileSync } from "node:fs";
import { deploymentsOf, type Deployment } from "./mesh.ts";

/** Resolves after `ms`. */
export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** `value` with `digits` decimals, as a number. */
export const round = (value: number, digits: number): number => Number(value.toFixed(digits));

/** PIDs of this process's workerd children (Linux only; empty elsewhere). */
export function workerdPids(): number[] {
  try {
    const children = readdirSync("/proc/self/task").flatMap((tid) =>
      readFileSync(`/proc/self/task/${tid}/children`, "utf8").trim().split(/\s+/).filter(Boolean).map(Number),
    );
    return children.filter((pid) => {
      try {
        return readFileSync(`/proc/${pid}/comm`, "utf8").trim() === "workerd";
      } catch {
        return false;
      }
    });
  } catch {
    return [];
  }
}

/** CPU ticks (1/100 s, Linux's USER_HZ) used so far by `pids`. */
export function cpuTicks(pids: number[]): number {
  let total = 0;
  for (const pid of pids) {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      total += Number(fields[11]) + Number(fields[12]); // utime, stime
    } catch {
      // exited
    }
  }
  return total;
}

/** The single deployment a bench worker's wrangler config declares. */
export function onlyDeployment(configPath: string): Deployment {
  const [deployment, ...rest] = deploymentsOf(configPath);
  if (!deployment || rest.length > 0) throw new Error(`${configPath}: expected exactly one deployment`);
  return deployment;
}
