/** Command registration compares every field we set, so changing any of them re-registers. */
import { describe, expect, it } from 'vitest';
import { sameCommands } from '../../src/bot/register.ts';
import { commands } from '../../commands/index.ts';

const wanted = commands.map((c) => c.definition);
/** What Discord answers for the commands it has: ours, with its ids and defaults added. */
const registered = (): Record<string, unknown>[] =>
  wanted.map((c, i) => ({ id: String(1000 + i), application_id: '1', version: '1', ...(JSON.parse(JSON.stringify(c)) as Record<string, unknown>) }));

describe('sameCommands', () => {
  it('is true for what Discord has when nothing changed', () => {
    expect(sameCommands(registered(), wanted)).toBe(true);
  });

  it('sees a change in integration_types or contexts', () => {
    for (const field of ['integration_types', 'contexts'] as const) {
      const changed = registered();
      expect(changed[0]![field]).toBeDefined();
      changed[0]![field] = [0, 1, 2];
      expect(sameCommands(changed, wanted), field).toBe(false);
    }
  });

  it('sees a change in description and default_member_permissions', () => {
    const a = registered();
    a[0]!.description = 'something else';
    expect(sameCommands(a, wanted)).toBe(false);
    const b = registered();
    b[0]!.default_member_permissions = '8';
    expect(sameCommands(b, wanted)).toBe(false);
  });
});
