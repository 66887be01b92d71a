/**
 * `/model show|list|rollback` (admins): the active model and its metadata, the stored models, and
 * going back to the previous model — in the registry and in the live classifier at once.
 */

import { ADMIN_COMMAND, adminServices, adminSlashCommand, jobUser } from '../src/bot/admin.ts';
import { chatCommand } from '../src/bot/command.ts';
import { modelEmbed, modelListEmbed } from '../src/bot/replies/models.ts';

export const model = chatCommand({
  definition: adminSlashCommand('model', 'The model the bot answers with (admins)')
    .addSubcommand((s) => s.setName('show').setDescription('The active model and its metadata'))
    .addSubcommand((s) => s.setName('list').setDescription('Every stored model'))
    .addSubcommand((s) => s.setName('rollback').setDescription('Go back to the previously active model, at once'))
    .toJSON(),
  ...ADMIN_COMMAND,
  defer: (i) => (i.options.getSubcommand(false) === 'rollback' ? 'public' : 'ephemeral'),
  async execute({ interaction, services }) {
    const { models } = adminServices(services);
    const sub = interaction.options.getSubcommand(false) ?? 'show';
    if (sub === 'list') {
      await interaction.editReply({ embeds: [modelListEmbed(await models.list())] });
      return;
    }
    if (sub === 'rollback') {
      const by = jobUser(interaction.user);
      const { from, to } = await models.rollback();
      services.log(`admin: ${by.name} (${by.id}) rolled back from ${from ?? 'none'} to ${to}`);
      await interaction.editReply({
        embeds: [
          {
            title: '⏪ Rolled back',
            description: `\`${to}\` is the active model again${from ? ` (instead of \`${from}\`)` : ''}; the bot answers with it from now on. Rolled back by ${by.name}.`,
            color: 0xf1c40f,
          },
        ],
      });
      return;
    }
    const { registry, live, previous, workers } = await models.active();
    const embed = modelEmbed(registry, live, previous);
    const jobsWorkers = await adminServices(services).jobs.workers?.();
    if (jobsWorkers) {
      // Distributed: whether each jobs worker can read its training and test data (a /retrain or /score there would fail otherwise).
      const can = (problems: string[], command: string, data: string) => (problems.length ? `⚠️ ${command} would fail: ${problems.join('; ')}` : `${data} ✅`);
      const value =
        jobsWorkers
          .map((w) => `\`${w.name}\` → ${can(w.trainDataProblems, '/retrain', 'training data')} · ${can(w.testDataProblems, '/score', 'test data')}`)
          .join('\n') || 'none alive (a job waits for one)';
      embed.fields = [...(embed.fields ?? []), { name: `Jobs workers (${jobsWorkers.length})`, value: value.slice(0, 1024) }];
    }
    if (workers) {
      // Distributed: what each inference worker answers with (they swap within seconds of a promotion).
      const value = workers.map((w) => `\`${w.name}\` → \`${w.model ?? 'no head'}\``).join('\n') || 'none alive';
      embed.fields = [...(embed.fields ?? []), { name: `Inference workers (${workers.length})`, value: value.slice(0, 1024) }];
    }
    await interaction.editReply({ embeds: [embed] });
  },
});
