using Queue.Hosting.Security;

var builder = Queue.Hosting.QueueApplication.CreateBuilder(args);
builder.AddQueueServiceDefaults();
builder.AddQueueAdapters();
builder.AddWorker();

var app = builder.Build();
app.UseQueueAuth();
app.MapQueueDefaultEndpoints();
app.Run();
