using Queue.Hosting.Security;

var builder = Queue.Hosting.QueueApplication.CreateBuilder(args);
builder.AddQueueServiceDefaults();
builder.AddQueueAdapters();
builder.AddCoordinator();

var app = builder.Build();
app.UseQueueAuth();
app.MapQueueDefaultEndpoints();
app.MapCoordinatorEndpoints();
app.Run();
