/**
 * `/score` (admins): the active model on TEST_DATA → submission.csv (Kaggle's format), attached;
 * with TEST_LABELS also log loss, accuracy, the confusion matrix and the worst-errors contact
 * sheet. Shown live on one message like /retrain.
 */

import { ADMIN_COMMAND, adminServices, adminSlashCommand, jobUser } from '../src/bot/admin.ts';
import { chatCommand } from '../src/bot/command.ts';
import { followJob } from '../src/bot/job-message.ts';

export const score = chatCommand({
  definition: adminSlashCommand('score', 'Score the configured test set with the active model: submission.csv and metrics (admins)').toJSON(),
  ...ADMIN_COMMAND,
  defer: () => 'public',
  async execute({ interaction, services }) {
    const admin = adminServices(services);
    await followJob(interaction, admin, services.log, (watch) => admin.jobs.start({ kind: 'score' }, jobUser(interaction.user), watch));
  },
});
