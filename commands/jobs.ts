/**
 * `/jobs` (admins): the job running now and the last ones — who started them, what kind, how they
 * ended — with a Cancel button for the running one and Resume buttons for interrupted ones. The
 * Cancel and Resume buttons (also on job messages) are routed from here.
 */
import { ActionRowBuilder, type ButtonBuilder, MessageFlags } from 'discord.js';
import { ADMIN_COMMAND, adminServices, adminSlashCommand, jobUser } from '../src/bot/admin.ts';
import { chatCommand, type ButtonRoute } from '../src/bot/command.ts';
import { BUTTONS, cancelRow, followJob, resumeButton } from '../src/bot/job-message.ts';
import { jobsEmbed } from '../src/bot/replies/jobs.ts';
import { describeError } from '../src/bot/replies/words.ts';
import { outcomeOf } from '../src/metrics.ts';

const cancelRoute: ButtonRoute = {
  prefix: BUTTONS.cancel,
  admin: true,
  async handle({ interaction, services, args: [jobId = ''] }) {
    const { jobs } = adminServices(services);
    if (!(await jobs.cancel(jobId, jobUser(interaction.user)))) {
      await interaction.reply({ content: `Job #${jobId} is not running any more.`, flags: MessageFlags.Ephemeral });
      return 'bad_input';
    }
    // The job's own message says it was cancelled when the job has stopped (within one batch).
    await interaction.deferUpdate();
  },
};

const resumeRoute: ButtonRoute = {
  prefix: BUTTONS.resume,
  admin: true,
  async handle({ interaction, services, args: [jobId = ''] }) {
    const admin = adminServices(services);
    await interaction.deferReply();
    try {
      await followJob(interaction, admin, services.log, (watch) => admin.jobs.resume(jobId, jobUser(interaction.user), watch));
    } catch (err) {
      await interaction.editReply({ content: describeError(err), embeds: [], components: [] });
      return outcomeOf(err);
    }
  },
};

export const jobs = chatCommand({
  definition: adminSlashCommand('jobs', 'The job running now and the last ones (admins)')
    .toJSON(),
  ...ADMIN_COMMAND,
  buttons: [cancelRoute, resumeRoute],
  defer: () => 'ephemeral',
  async execute({ interaction, services }) {
    const runner = adminServices(services).jobs;
    const current = await runner.current();
    const recent = await runner.recent(10);
    const components: ActionRowBuilder<ButtonBuilder>[] = [];
    if (current) components.push(cancelRow(current.id));
    const interrupted = recent.filter((r) => r.status === 'interrupted').slice(0, 5);
    if (interrupted.length) {
      const row = new ActionRowBuilder<ButtonBuilder>();
      for (const r of interrupted) row.addComponents(resumeButton(r.id));
      components.push(row);
    }
    await interaction.editReply({ embeds: [jobsEmbed(current, recent)], components });
  },
});

