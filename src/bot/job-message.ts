/**
 * How a job shows on Discord: ONE message, edited as the job goes — stage, a progress bar,
 * images/s, ETA and a Cancel button, at most once per `progressIntervalMs` (5 s) — and at the end
 * the result (a retrain's comparison with the curves PNG and Promote / Discard buttons; a scoring
 * run's metrics with submission.csv and the worst errors attached) or how it ended.
 *
 * An interaction's token edits its reply for 15 minutes only, and a retrain can take longer: after
 * `tokenTtlMs` the same message is edited through the channel with the bot's own token.
 */
import { basename } from 'node:path';
import { readFile } from 'node:fs/promises';
import {
  ActionRowBuilder,
  AttachmentBuilder,
  ButtonBuilder,
  ButtonStyle,
  type APIEmbed,
  type RepliableInteraction,
} from 'discord.js';
import type { JobRecord } from '../jobs/types.ts';
import { buttonId } from './command.ts';
import { jobEndedEmbed, jobProgressEmbed, retrainResultEmbed, scoreResultEmbed } from './replies/jobs.ts';
import type { AdminServices, Log } from './services.ts';
import { Throttle } from './throttle.ts';

export const BUTTONS = {
  cancel: 'job-cancel',
  resume: 'job-resume',
  promote: 'model-promote',
  discard: 'model-discard',
} as const;

export interface MessagePayload {
  content?: string;
  embeds: APIEmbed[];
  components: ActionRowBuilder<ButtonBuilder>[];
  files?: AttachmentBuilder[];
}

/** The reply of an interaction, edited through its token while it is valid, then through the channel. */
export class LiveMessage {
  private ref: { channelId: string; messageId: string } | null = null;
  /** When the interaction reached us (its token's clock; Discord wants the first answer within 3 s of it). */
  private readonly since = Date.now();

  constructor(
    private readonly interaction: RepliableInteraction,
    private readonly tokenTtlMs: number,
  ) {}

  async edit(payload: MessagePayload): Promise<void> {
    if (!this.ref || Date.now() - this.since < this.tokenTtlMs) {
      const m = await this.interaction.editReply(payload);
      this.ref = { channelId: m.channelId, messageId: m.id };
      return;
    }
    const channel = await this.interaction.client.channels.fetch(this.ref.channelId);
    if (!channel?.isTextBased()) throw new Error(`channel ${this.ref.channelId} is not reachable to edit the job's message`);
    await channel.messages.edit(this.ref.messageId, payload);
  }
}

export function cancelRow(jobId: string): ActionRowBuilder<ButtonBuilder> {
  return new ActionRowBuilder<ButtonBuilder>().addComponents(
    new ButtonBuilder().setCustomId(buttonId(BUTTONS.cancel, jobId)).setLabel('Cancel').setStyle(ButtonStyle.Danger).setEmoji('🛑'),
  );
}

export function decisionRow(modelId: string, jobId: string): ActionRowBuilder<ButtonBuilder> {
  return new ActionRowBuilder<ButtonBuilder>().addComponents(
    new ButtonBuilder().setCustomId(buttonId(BUTTONS.promote, modelId, jobId)).setLabel('Promote').setStyle(ButtonStyle.Success).setEmoji('🚀'),
    new ButtonBuilder().setCustomId(buttonId(BUTTONS.discard, modelId, jobId)).setLabel('Discard').setStyle(ButtonStyle.Secondary).setEmoji('🗑️'),
  );
}

export function resumeButton(jobId: string): ButtonBuilder {
  return new ButtonBuilder().setCustomId(buttonId(BUTTONS.resume, jobId)).setLabel(`Resume #${jobId}`).setStyle(ButtonStyle.Primary).setEmoji('▶️');
}

export function resumeRow(jobId: string): ActionRowBuilder<ButtonBuilder> {
  return new ActionRowBuilder<ButtonBuilder>().addComponents(resumeButton(jobId));
}

export function progressPayload(r: JobRecord): MessagePayload {
  return { embeds: [jobProgressEmbed(r)], components: [cancelRow(r.id)] };
}

/** The final message for a job's record. */
export async function finalPayload(r: JobRecord): Promise<MessagePayload> {
  if (r.status === 'succeeded' && r.result?.kind === 'retrain') {
    const files = await attach([r.result.curvesPng]);
    return {
      embeds: [retrainResultEmbed(r, r.result, files[0]?.name ?? null)],
      components: r.decision ? [] : [decisionRow(r.result.modelId, r.id)],
      files,
    };
  }
  if (r.status === 'succeeded' && r.result?.kind === 'score') {
    const files = await attach([r.result.submissionCsv, r.result.worstPng]);
    const worst = r.result.worstPng ? basename(r.result.worstPng) : null;
    return { embeds: [scoreResultEmbed(r, r.result, files.some((f) => f.name === worst) ? worst : null)], components: [], files };
  }
  return { embeds: [jobEndedEmbed(r)], components: r.status === 'interrupted' ? [resumeRow(r.id)] : [] };
}

/** Files that exist, as attachments (a missing report is left out, not fatal). */
async function attach(paths: (string | null)[]): Promise<AttachmentBuilder[]> {
  const out: AttachmentBuilder[] = [];
  for (const p of paths) {
    if (!p) continue;
    try {
      out.push(new AttachmentBuilder(await readFile(p), { name: basename(p) }));
    } catch {
      /* left out */
    }
  }
  return out;
}

/**
 * Shows a job on the interaction's reply and keeps it up to date: here (JobMessage), or, when the
 * jobs worker is the notifier (distributed), by posting the first state and telling it where.
 */
export async function followJob(
  interaction: RepliableInteraction,
  admin: AdminServices,
  log: Log,
  start: (watch: (r: JobRecord) => void) => Promise<{ record: JobRecord; done: Promise<JobRecord> }>,
): Promise<void> {
  if (admin.jobMessages) {
    const started = await start(() => {});
    const m = await interaction.editReply(progressPayload(started.record));
    await admin.jobMessages.attach(started.record.id, { channelId: m.channelId, messageId: m.id });
    return;
  }
  const view = new JobMessage(interaction, admin, log);
  view.follow(await start(view.watch));
}

/**
 * Follows one job on one message: pass `watch` to JobRunner.start()/resume(), then `follow(done)`.
 * Progress edits are throttled; the final edit always happens.
 */
export class JobMessage {
  private readonly message: LiveMessage;
  private readonly throttle: Throttle<MessagePayload>;

  constructor(
    interaction: RepliableInteraction,
    private readonly admin: AdminServices,
    private readonly log: Log,
  ) {
    this.message = new LiveMessage(interaction, admin.tokenTtlMs);
    this.throttle = new Throttle<MessagePayload>(
      admin.progressIntervalMs,
      (payload) => this.message.edit(payload),
      (err) => this.log(`jobs: could not update the progress message: ${err instanceof Error ? err.message : String(err)}`),
    );
  }

  readonly watch = (r: JobRecord): void => {
    if (r.status === 'running') this.throttle.push(progressPayload(r));
  };

  /** Shows the job at once, then follows it to its end in the background (tracked for shutdown). */
  follow(started: { record: JobRecord; done: Promise<JobRecord> }): void {
    this.throttle.push(progressPayload(started.record));
    const p = started.done
      .then(async (r) => this.throttle.final(await finalPayload(r)))
      .catch((err) => this.log(`jobs: could not post the end of a job: ${err instanceof Error ? err.message : String(err)}`));
    const tracked = p.finally(() => this.admin.background.delete(tracked));
    this.admin.background.add(tracked);
  }
}
